"""Speech-emotion corpora from a user's own copy, in their official layouts.

Public: :func:`load_corpus`, :func:`known_corpora`, :func:`splits`, :class:`Corpus`,
:class:`Utterance`, :class:`Split`, :class:`Waveforms`, :class:`Skipped`,
:class:`CorpusLayoutError` and :data:`COMMON_LABELS` (the mapping tables are in
:mod:`emohrnet_fast.data.labels`).
"""

from emohrnet_fast.data.corpus import (
    Corpus,
    CorpusLayoutError,
    Skipped,
    Utterance,
    Waveforms,
    default_cache_dir,
)
from emohrnet_fast.data.labels import COMMON_LABELS
from emohrnet_fast.data.load import known_corpora, load_corpus
from emohrnet_fast.data.splits import Split, splits

__all__ = [
    "COMMON_LABELS",
    "Corpus",
    "CorpusLayoutError",
    "Skipped",
    "Split",
    "Utterance",
    "Waveforms",
    "default_cache_dir",
    "known_corpora",
    "load_corpus",
    "splits",
]
