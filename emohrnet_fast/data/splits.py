"""Train/test splits: speaker-independent by default, random only on request."""

from __future__ import annotations

import numbers
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from emohrnet_fast.data.corpus import Corpus

Protocol = Literal["loso", "speaker_kfold", "session", "random"]
PROTOCOLS: tuple[str, ...] = ("loso", "speaker_kfold", "session", "random")


@dataclass(frozen=True, eq=False)  # tensors have no single truth value to compare by
class Split:
    """One fold: indices into ``corpus.utterances`` (and ``corpus.waveforms``)."""

    protocol: str  # "loso", "speaker_kfold", "session" or "random"
    fold: int  # 0-based fold number
    train: Tensor  # (n_train,) int64, sorted
    test: Tensor  # (n_test,) int64, sorted
    test_groups: tuple[str, ...]  # held-out speakers (or "Session1", ...); () for random
    speaker_independent: bool  # False only for "random": speakers appear on both sides

    def __str__(self) -> str:
        kind = "speaker-independent" if self.speaker_independent else "speaker-DEPENDENT"
        held = f", test: {', '.join(self.test_groups)}" if self.test_groups else ""
        return (
            f"{self.protocol} fold {self.fold} ({kind}): {self.train.numel()} train, "
            f"{self.test.numel()} test{held}"
        )


def splits(
    corpus: Corpus, protocol: Protocol = "loso", *, k: int = 5, seed: int = 0
) -> list[Split]:
    """Cross-validation folds of ``corpus``.

    Args:
        corpus: a loaded corpus.
        protocol: ``"loso"`` (leave one speaker out: one fold per speaker),
            ``"speaker_kfold"`` (``k`` folds of disjoint speakers, balanced by utterance
            count), ``"session"`` (IEMOCAP: leave one session out, both its speakers) or
            ``"random"`` (stratified by label, ``k`` folds; speaker-dependent, so every
            :class:`Split` says so).
        k: folds for ``speaker_kfold`` and ``random``.
        seed: tie-breaking (``speaker_kfold``) and shuffling (``random``) seed.

    Returns:
        The folds; every utterance is in exactly one fold's ``test``.

    Raises:
        TypeError: ``corpus`` is not a :class:`Corpus`.
        ValueError: unknown ``protocol``; a bad ``k`` or ``seed``; too few speakers, sessions
            or utterances for it; utterances without a speaker id in a speaker-independent
            protocol.
    """
    if not isinstance(corpus, Corpus):
        raise TypeError(
            f"corpus: expected a Corpus (from emohrnet_fast.data.load_corpus), got "
            f"{type(corpus).__name__}"
        )
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k={k!r}: expected an integer >= 2")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r}: expected an integer")
    if protocol == "random":
        return _random(corpus, k, seed)
    groups = _sessions(corpus) if protocol == "session" else _speakers(corpus)
    if protocol == "speaker_kfold":
        folds = _balanced_folds(Counter(groups), k, seed)
    else:
        names = sorted(set(groups))
        if len(names) < 2:
            raise ValueError(f"protocol={protocol!r} needs at least 2 groups, found {names}")
        folds = [[name] for name in names]
    return [_fold(protocol, i, groups, held) for i, held in enumerate(folds)]


def _speakers(corpus: Corpus) -> list[str]:
    missing = sum(u.speaker is None for u in corpus.utterances)
    if missing:
        raise ValueError(
            f"corpus {corpus.name!r}: {missing} utterances have no speaker id, so no "
            "speaker-independent split exists (folder: pass speaker_pattern=...; or use "
            "protocol='random', which is speaker-dependent)"
        )
    return [u.speaker for u in corpus.utterances if u.speaker is not None]  # all, checked above


def _sessions(corpus: Corpus) -> list[str]:
    if any("session" not in u.metadata for u in corpus.utterances):
        raise ValueError(
            f"protocol='session' needs session metadata (IEMOCAP); corpus {corpus.name!r} "
            "has none: use 'loso' or 'speaker_kfold'"
        )
    return [f"Session{u.metadata['session']}" for u in corpus.utterances]


def _balanced_folds(counts: Counter, k: int, seed: int) -> list[list[str]]:
    """Speakers into ``k`` folds, largest first into the fold with fewest utterances."""
    if len(counts) < k:
        raise ValueError(f"k={k}: speaker_kfold needs at least k speakers, found {len(counts)}")
    order = torch.randperm(len(counts), generator=torch.Generator().manual_seed(seed)).tolist()
    speakers = sorted(counts)
    shuffled = [speakers[i] for i in order]
    # Stable sort keeps the seeded order among equal counts.
    shuffled.sort(key=lambda s: -counts[s])
    folds: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for speaker in shuffled:
        target = min(range(k), key=lambda f: (sizes[f], len(folds[f]), f))
        folds[target].append(speaker)
        sizes[target] += counts[speaker]
    return [sorted(fold) for fold in folds]


def _fold(protocol: str, index: int, groups: list[str], held: list[str]) -> Split:
    held_set = set(held)
    test = [i for i, g in enumerate(groups) if g in held_set]
    train = [i for i, g in enumerate(groups) if g not in held_set]
    return Split(
        protocol=protocol,
        fold=index,
        train=torch.tensor(train, dtype=torch.int64),
        test=torch.tensor(test, dtype=torch.int64),
        test_groups=tuple(held),
        speaker_independent=True,
    )


def _random(corpus: Corpus, k: int, seed: int) -> list[Split]:
    """Stratified k-fold: each label's utterances shuffled and dealt round-robin to folds."""
    if len(corpus) < k:
        raise ValueError(f"k={k}: random needs at least k utterances, found {len(corpus)}")
    generator = torch.Generator().manual_seed(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(corpus.utterances):
        by_label[u.label].append(i)
    fold_of = [0] * len(corpus)
    start = 0
    for label in corpus.labels:
        members = by_label[label]
        for position, j in enumerate(torch.randperm(len(members), generator=generator).tolist()):
            # Continue where the previous label stopped, so fold sizes differ by at most one.
            fold_of[members[j]] = (start + position) % k
        start = (start + len(members)) % k
    out = []
    for fold in range(k):
        test = [i for i, f in enumerate(fold_of) if f == fold]
        train = [i for i, f in enumerate(fold_of) if f != fold]
        out.append(
            Split(
                protocol="random",
                fold=fold,
                train=torch.tensor(train, dtype=torch.int64),
                test=torch.tensor(test, dtype=torch.int64),
                test_groups=(),
                speaker_independent=False,
            )
        )
    return out
