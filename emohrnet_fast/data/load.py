"""The corpus registry and :func:`load_corpus`."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from emohrnet_fast.data import cremad, emodb, emovo, folder, iemocap, ravdess, savee, tess
from emohrnet_fast.data._scan import BROKEN_LINK, broken_links, drop_duplicates, layout_error
from emohrnet_fast.data.corpus import Corpus, Skipped, attach_waveforms, make_corpus


class _Reader(NamedTuple):
    title: str  # display name
    layout: str  # the expected layout, quoted in errors
    scan: Callable  # scan(root, **options) -> (utterances, skipped)


_READERS: dict[str, _Reader] = {
    "emodb": _Reader(emodb.TITLE, emodb.LAYOUT, emodb.scan),
    "ravdess": _Reader(ravdess.TITLE, ravdess.LAYOUT, ravdess.scan),
    "cremad": _Reader(cremad.TITLE, cremad.LAYOUT, cremad.scan),
    "tess": _Reader(tess.TITLE, tess.LAYOUT, tess.scan),
    "savee": _Reader(savee.TITLE, savee.LAYOUT, savee.scan),
    "emovo": _Reader(emovo.TITLE, emovo.LAYOUT, emovo.scan),
    "iemocap": _Reader(iemocap.TITLE, iemocap.LAYOUT, iemocap.scan),
    "folder": _Reader(folder.FOLDER_TITLE, folder.FOLDER_LAYOUT, folder.scan_folder),
    "csv": _Reader(folder.CSV_TITLE, folder.CSV_LAYOUT, folder.scan_csv),
}


# Layouts the user defines: two files of one name there may be two recordings.
_USER_LAYOUTS = ("folder", "csv")


def known_corpora() -> tuple[str, ...]:
    """Names :func:`load_corpus` accepts."""
    return tuple(_READERS)


def load_corpus(
    name: str,
    root: str | Path,
    *,
    sample_rate: int = 16000,
    load_audio: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    workers: int | None = None,
    **options,
) -> Corpus:
    """Read a corpus from a local copy in its official layout. Nothing is downloaded.

    Args:
        name: one of :func:`known_corpora`: ``emodb``, ``ravdess``, ``cremad``, ``tess``,
            ``savee``, ``emovo``, ``iemocap``, or ``folder`` / ``csv`` for your own data.
        root: the corpus folder (for ``csv``: the manifest file).
        sample_rate: Hz to resample every utterance to (soxr, band-limited).
        load_audio: decode the audio into :attr:`Corpus.waveforms` (mono float32);
            ``False`` reads names and labels only (no file is opened).
        cache: reuse decoded audio from the cache, and write it after the first decode. The
            cache key covers every file's path, size and mtime and the sample rate, so a
            changed file is decoded again; a corrupt cache file is rebuilt.
        cache_dir: cache folder; ``None``: ``$EMOHRNET_CACHE`` or ``~/.cache/emohrnet_fast``.
        progress: tqdm bar during the first decode; ``None``: only when stderr is a terminal.
        workers: decoding threads; ``None``: up to 4.
        **options: corpus options: ``iemocap``: ``label_set="4class" | "full"``;
            ``folder``: ``speaker_pattern`` (a regular expression, see
            :func:`emohrnet_fast.data.folder.scan_folder`).

    Returns:
        The :class:`Corpus`: utterances sorted by path, the label set, skipped files with
        reasons (naming rule, protocol, unreadable audio) and, with ``load_audio``, the
        waveforms (utterance ``i`` is ``corpus.waveforms[i]``).

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), a bad
            ``sample_rate`` or ``workers``.
        TypeError: an option this corpus does not take, or a ``root`` that is not a path.
        FileNotFoundError: ``root`` does not exist.
        CorpusLayoutError: ``root`` is not this corpus (the message says what was expected).
    """
    if name not in _READERS:
        raise ValueError(f"name={name!r}: unknown corpus; known: {', '.join(_READERS)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r}: expected a positive integer (Hz)")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers={workers!r}: expected None or an integer >= 1")
    if not isinstance(root, str | os.PathLike):
        raise TypeError(f"root: expected a str or os.PathLike, got {type(root).__name__}")
    reader = _READERS[name]
    accepted = list(inspect.signature(reader.scan).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"load_corpus({name!r}): unknown option(s) {unknown}; {name} accepts "
            f"{accepted or 'none'}"
        )
    # Absolute, so cache keys and utterance paths do not depend on the working directory.
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(
            f"root={str(root)!r}: no such file or folder (expected {reader.title}: {reader.layout})"
        )
    if name != "csv" and not root.is_dir():
        raise layout_error(reader.title, root, reader.layout, "a file, not a folder")
    utterances, skipped = reader.scan(root, **options)
    if root.is_dir():
        skipped = [*skipped, *(Skipped(p, BROKEN_LINK) for p in broken_links(root))]
    if name not in _USER_LAYOUTS:  # the corpora's own file names identify their recordings
        utterances, duplicates = drop_duplicates(utterances)
        skipped = [*skipped, *duplicates]
    if not utterances:
        found = f"{len(skipped)} files, none matching" if skipped else "no audio files"
        raise layout_error(reader.title, root, reader.layout, found)
    corpus = make_corpus(name, reader.title, root, utterances, skipped, sample_rate)
    if not load_audio:
        return corpus
    return attach_waveforms(
        corpus, cache=cache, cache_dir=cache_dir, progress=progress, workers=workers
    )
