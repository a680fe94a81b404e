"""Corpus and utterance records, the summary, the decoded waveforms and their cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from emohrnet_fast import audio
from emohrnet_fast._files import atomic_write, temp_glob
from emohrnet_fast.data.labels import label_order

# Bump when the cache file's content or the decoding changes: older files are then rebuilt.
CACHE_FORMAT = 1
# Skipped files listed by name per reason in the summary; the rest are counted.
_SUMMARY_EXAMPLES = 3


class CorpusLayoutError(ValueError):
    """``root`` exists but does not hold the corpus it was loaded as."""


@dataclass(frozen=True)
class Utterance:
    """One labelled recording."""

    path: Path  # the audio file
    label: str  # emotion in the common label space (see data/labels.py)
    speaker: str | None  # speaker id as the corpus writes it (EmoDB "03", IEMOCAP "Ses01F")
    gender: str | None = None  # "female", "male" or None where the corpus does not say
    source_label: str = ""  # the corpus's own emotion code ("W", "ANG", "rab", "exc", ...)
    metadata: dict[str, Any] = field(default_factory=dict)  # corpus-specific fields


@dataclass(frozen=True)
class Skipped:
    """A file left out of a corpus, and why."""

    path: Path  # the file (or, for IEMOCAP, the expected audio path of a labelled turn)
    reason: str  # one line; files with the same reason are counted together in the summary


@dataclass(frozen=True)
class Waveforms:
    """Every utterance's samples back to back in one tensor, with offsets and lengths.

    One flat tensor (not a padded matrix) keeps memory at the audio's own size even when
    lengths differ a lot (IEMOCAP: 0.6 s to 35 s); :meth:`padded` builds padded batches from
    it with one gather, on whatever device the tensors live on.
    """

    data: Tensor  # (total_samples,) float32, mono
    offsets: Tensor  # (utterances,) int64: start of each utterance in data
    lengths: Tensor  # (utterances,) int64: samples per utterance
    sample_rate: int  # Hz

    def __len__(self) -> int:
        return self.lengths.numel()

    def __getitem__(self, index: int) -> Tensor:
        """Utterance ``index``: ``(length,)`` float32, a view of :attr:`data`."""
        start = int(self.offsets[index])
        return self.data[start : start + int(self.lengths[index])]

    def to(self, device: torch.device | str) -> Waveforms:
        """A copy on ``device`` (move once, then slice batches there)."""
        return Waveforms(
            self.data.to(device), self.offsets.to(device), self.lengths.to(device), self.sample_rate
        )

    def padded(
        self, indices: Tensor | list[int] | None = None, max_length: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Zero-padded batch.

        Args:
            indices: utterances to take, ``(batch,)``; ``None``: all of them.
            max_length: fixed width: longer utterances are cropped to it, shorter ones padded;
                ``None``: the longest selected length (one device-to-host sync on CUDA).

        Returns:
            ``(waveforms (batch, time) float32, lengths (batch,) int64)``; ``lengths`` are
            the cropped lengths.
        """
        if max_length is not None and (isinstance(max_length, bool) or max_length < 1):
            raise ValueError(f"max_length={max_length!r}: expected None or an integer >= 1")
        device = self.data.device
        if indices is None:
            indices = torch.arange(len(self), device=device)
        indices = torch.as_tensor(indices, dtype=torch.int64, device=device)
        if max_length is None:
            lengths = self.lengths[indices]
            max_length = int(lengths.max()) if lengths.numel() else 0
        return self.crops(indices, max_length)

    def crops(
        self,
        indices: Tensor | list[int],
        length: int,
        position: Tensor | float = 0.0,
        speed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Fixed-length windows, gathered on the data's device without a host sync.

        Args:
            indices: utterances to take, ``(batch,)``.
            length: window width in samples (>= 0).
            position: where each window sits in a longer utterance, in [0, 1]: 0 = start,
                0.5 = centre, 1 = end; a ``(batch,)`` tensor of ``torch.rand`` values gives
                uniform random crops. Shorter utterances start at 0 and are zero-padded.
            speed: optional ``(batch,)`` playback-rate factors, each > 0 (not checked: that
                would cost a host sync). Window ``i`` then covers ``length * speed[i]`` source
                samples, linearly interpolated onto ``length`` output samples: speed
                perturbation (Ko et al. 2015), 1.1 plays 10 % faster and 10 % higher.
                ``None``: every factor is 1, an exact copy of the samples.

        Returns:
            ``(waveforms (batch, length) float32, lengths (batch,) int64)``: the samples
            actually taken from each utterance (output samples, after any speed change).
        """
        device = self.data.device
        indices = torch.as_tensor(indices, dtype=torch.int64, device=device)
        lengths = self.lengths[indices]
        if speed is not None and speed.shape != indices.shape:
            raise ValueError(
                f"speed: expected shape {tuple(indices.shape)} (one factor per window), "
                f"got {tuple(speed.shape)}"
            )
        if self.data.numel() == 0:
            return torch.zeros(indices.numel(), length, device=device), lengths.clamp(max=length)
        steps = torch.arange(length, device=device)
        if speed is None:
            span = torch.full_like(lengths, length)
        else:
            speed = speed.to(device=device, dtype=torch.float32)
            # Source samples the window reaches, the last one included.
            span = torch.floor((length - 1) * speed).to(torch.int64) + 1
        slack = (lengths - span).clamp(min=0)
        start = torch.minimum(torch.floor(position * (slack + 1)).to(torch.int64), slack)
        last = self.data.numel() - 1
        if speed is None:
            taken = lengths.clamp(max=length)
            positions = ((self.offsets[indices] + start)[:, None] + steps).clamp(max=last)
            batch = torch.where(steps < taken[:, None], self.data[positions], 0.0)
            return batch, taken
        source = steps[None, :] * speed[:, None]  # (batch, length), from the window start
        left = torch.floor(source)
        fraction = source - left
        left = start[:, None] + left.to(torch.int64)  # within the utterance
        inside = left < lengths[:, None]
        right = torch.minimum(left + 1, lengths[:, None] - 1)
        base = self.offsets[indices][:, None]
        a = self.data[(base + left).clamp(max=last)]
        b = self.data[(base + right).clamp(min=0, max=last)]
        batch = torch.where(inside, torch.lerp(a, b, fraction), 0.0)
        return batch, inside.sum(1)

    def as_list(self) -> list[Tensor]:
        """One ``(length,)`` view per utterance."""
        return [self[i] for i in range(len(self))]


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: its utterances, label set, what was skipped and (optionally) audio.

    ``print(corpus)`` shows the summary: counts per label and speaker, and the skipped files
    grouped by reason.
    """

    name: str  # registry name ("emodb", "ravdess", ..., "folder", "csv")
    title: str  # display name ("EmoDB", "RAVDESS", ...)
    root: Path  # the folder (or manifest) it was read from
    utterances: tuple[Utterance, ...]  # in a stable order (sorted by path)
    labels: tuple[str, ...]  # label set in common-label order; class i is labels[i]
    skipped: tuple[Skipped, ...] = ()  # files left out: naming rule, protocol, unreadable audio
    sample_rate: int = 16000  # Hz of the decoded waveforms
    waveforms: Waveforms | None = None  # decoded audio, utterance i at index i; None if not loaded
    cache_status: str = "not loaded"  # "hit", "miss", "rebuilt: <why>", "off" (cache=False)

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self):
        return iter(self.utterances)

    def __getitem__(self, index: int) -> Utterance:
        return self.utterances[index]

    def loaded_waveforms(self, role: str = "corpus") -> Waveforms:
        """:attr:`waveforms`, or a ValueError naming ``role`` (the caller's argument) when
        the corpus was read with ``load_audio=False``."""
        if self.waveforms is None:
            raise ValueError(f"{role} {self.name!r}: waveforms not loaded (load_audio=True)")
        return self.waveforms

    def subset(self, indices: Tensor | list[int]) -> Corpus:
        """The utterances at ``indices`` (in that order), with their waveforms if loaded.

        The label set stays the whole corpus's, so class ``i`` means the same in every fold.
        """
        index = torch.as_tensor(indices, dtype=torch.int64).flatten().cpu()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"indices: expected values in [0, {len(self)}), got {index.tolist()}")
        waveforms = None
        if self.waveforms is not None:
            w = self.waveforms
            lengths = w.lengths[index.to(w.lengths.device)]
            pieces = [w[i] for i in index.tolist()]
            data = torch.cat(pieces) if pieces else w.data[:0]
            offsets = torch.cumsum(lengths, 0) - lengths
            waveforms = Waveforms(data, offsets, lengths, w.sample_rate)
        return dataclasses.replace(
            self,
            utterances=tuple(self.utterances[i] for i in index.tolist()),
            skipped=(),
            waveforms=waveforms,
        )

    @property
    def speakers(self) -> tuple[str, ...]:
        """Distinct speaker ids, sorted (utterances without a speaker are left out)."""
        return tuple(sorted({u.speaker for u in self.utterances if u.speaker is not None}))

    @property
    def targets(self) -> Tensor:
        """``(utterances,)`` int64 class indices into :attr:`labels`."""
        index = {label: i for i, label in enumerate(self.labels)}
        return torch.tensor([index[u.label] for u in self.utterances], dtype=torch.int64)

    def fingerprint(self) -> str:
        """A hex digest of the utterances in order: file name, label, speaker and, once
        decoded, length in samples. Checkpoints keep it, so resuming on other data fails
        clearly; file names, not paths, so a corpus moved to another folder still matches."""
        lengths = self.waveforms.lengths.tolist() if self.waveforms is not None else None
        rows = [
            [u.path.name, u.label, u.speaker, lengths[i] if lengths is not None else None]
            for i, u in enumerate(self.utterances)
        ]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def label_counts(self) -> dict[str, int]:
        """Utterances per label, in :attr:`labels` order."""
        counts = Counter(u.label for u in self.utterances)
        return {label: counts[label] for label in self.labels}

    def speaker_counts(self) -> dict[str, int]:
        """Utterances per speaker, sorted by speaker id."""
        counts = Counter(u.speaker for u in self.utterances if u.speaker is not None)
        return {speaker: counts[speaker] for speaker in sorted(counts)}

    def skipped_counts(self) -> dict[str, int]:
        """Skipped files per reason, most frequent first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())

    def summary(self) -> str:
        """Counts per label, speaker and skip reason, as printed by ``print(corpus)``."""
        speakers = self.speaker_counts()
        lines = [
            f"{self.title}: {len(self)} utterances, {len(self.labels)} labels, "
            f"{len(speakers)} speakers, from {self.root}",
            "labels:   " + _counts_line(self.label_counts()),
            "speakers: " + _counts_line(speakers),
        ]
        unknown = sum(u.speaker is None for u in self.utterances)
        if unknown:
            lines.append(f"          (no speaker id: {unknown} utterances)")
        if self.waveforms is not None:
            seconds = self.waveforms.lengths.sum().item() / self.sample_rate
            lines.append(
                f"audio:    {seconds:.1f} s at {self.sample_rate} Hz (cache: {self.cache_status})"
            )
        lines.append(f"skipped:  {len(self.skipped)} files")
        for reason, count in self.skipped_counts().items():
            examples = [s.path.name for s in self.skipped if s.reason == reason]
            shown = ", ".join(examples[:_SUMMARY_EXAMPLES])
            more = ", ..." if count > _SUMMARY_EXAMPLES else ""
            lines.append(f"  {count} x {reason}: {shown}{more}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        loaded = "loaded" if self.waveforms is not None else "not loaded"
        return (
            f"Corpus(name={self.name!r}, utterances={len(self)}, labels={len(self.labels)}, "
            f"speakers={len(self.speakers)}, skipped={len(self.skipped)}, audio {loaded})"
        )


def _counts_line(counts: dict[str, int]) -> str:
    items = [f"{key} {value}" for key, value in counts.items()]
    # Wrap long speaker lists (CREMA-D has 91) at 8 per line.
    rows = [" | ".join(items[i : i + 8]) for i in range(0, len(items), 8)]
    return "\n          ".join(rows) if rows else "-"


def make_corpus(
    name: str,
    title: str,
    root: Path,
    utterances: list[Utterance],
    skipped: list[Skipped],
    sample_rate: int,
) -> Corpus:
    """A metadata-only :class:`Corpus`, utterances sorted by path."""
    utterances = sorted(utterances, key=lambda u: str(u.path))
    return Corpus(
        name=name,
        title=title,
        root=root,
        utterances=tuple(utterances),
        labels=label_order({u.label for u in utterances}),
        skipped=tuple(sorted(skipped, key=lambda s: str(s.path))),
        sample_rate=sample_rate,
    )


def default_cache_dir() -> Path:
    """``$EMOHRNET_CACHE`` if set, else ``~/.cache/emohrnet_fast``."""
    env = os.environ.get("EMOHRNET_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "emohrnet_fast"


def attach_waveforms(
    corpus: Corpus,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    workers: int | None = None,
) -> Corpus:
    """Decode (or reload from the cache) every utterance at ``corpus.sample_rate``.

    Files that fail to decode move from the utterances to ``skipped`` with the reason.

    Args:
        corpus: a metadata-only corpus.
        cache: read and write the cache.
        cache_dir: cache folder; ``None``: :func:`default_cache_dir`.
        progress: show a tqdm bar while decoding; ``None``: only when stderr is a terminal.
        workers: decoding threads; ``None``: up to 4.

    Returns:
        A copy of ``corpus`` with :attr:`Corpus.waveforms` set.
    """
    paths = [u.path for u in corpus.utterances]
    status = "off"
    decoded: dict[Path, Tensor | str] | None = None
    if cache:
        key = _cache_key(corpus, paths)
        file = Path(cache_dir or default_cache_dir()) / f"{corpus.name}-{key[:24]}.pt"
        decoded, status = _read_cache(file, key, paths)
    if decoded is None:
        decoded = _decode_all(paths, corpus.sample_rate, progress=progress, workers=workers)
        if cache:
            try:
                _write_cache(file, key, paths, decoded)
            except OSError as error:  # a read-only or full disk costs speed, not the load
                warnings.warn(
                    f"cache_dir={str(file.parent)!r}: cannot write the cache ({error}); "
                    "the next load decodes again",
                    RuntimeWarning,
                    stacklevel=3,
                )
    keep, samples = [], []
    for u in corpus.utterances:
        audio = decoded[u.path]
        if isinstance(audio, Tensor):
            keep.append(u)
            samples.append(audio)
    failed = [Skipped(p, why) for p in paths if isinstance(why := decoded[p], str)]
    lengths = torch.tensor([s.numel() for s in samples], dtype=torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    data = torch.cat(samples) if samples else torch.zeros(0)
    return Corpus(
        name=corpus.name,
        title=corpus.title,
        root=corpus.root,
        utterances=tuple(keep),
        labels=label_order({u.label for u in keep}),
        skipped=tuple(sorted([*corpus.skipped, *failed], key=lambda s: str(s.path))),
        sample_rate=corpus.sample_rate,
        waveforms=Waveforms(data, offsets, lengths, corpus.sample_rate),
        cache_status=status,
    )


def _decode_one(path: Path, sample_rate: int) -> Tensor | str:
    """The mono waveform, or the reason it is unusable (never raises for bad audio)."""
    try:
        waveform, _ = audio.load(path, sample_rate, mono=True)
    except audio.AudioDecodeError as error:
        return f"unreadable audio: {error.kind}"
    except OSError as error:
        return f"unreadable audio: {type(error).__name__}"
    return waveform.contiguous()


def _decode_all(
    paths: list[Path], sample_rate: int, *, progress: bool | None, workers: int | None
) -> dict[Path, Tensor | str]:
    workers = workers or min(4, os.cpu_count() or 1)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    # libsndfile and libsoxr release the GIL, so threads decode in parallel.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _decode_one(p, sample_rate), paths)
        bar = tqdm(results, total=len(paths), desc="decoding", unit="file", disable=disable)
        return dict(zip(paths, bar, strict=True))


def _cache_key(corpus: Corpus, paths: list[Path]) -> str:
    """Hash of everything the decoded audio depends on: files, sizes, mtimes, rate."""
    entries = []
    for path in paths:
        try:
            stat = path.stat()
            entries.append([str(path), stat.st_size, stat.st_mtime_ns])
        except OSError:
            entries.append([str(path), -1, -1])
    blob = json.dumps([CACHE_FORMAT, corpus.name, corpus.sample_rate, entries])
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_cache(
    file: Path, key: str, paths: list[Path]
) -> tuple[dict[Path, Tensor | str] | None, str]:
    """The cached decode if ``file`` exists and is complete and consistent, else ``None``."""
    if not file.exists():
        return None, "miss"
    try:
        content = torch.load(file, map_location="cpu", weights_only=True)
        files, lengths, data, failed = (
            content["files"],
            content["lengths"],
            content["data"],
            content["failed"],
        )
        if content["format"] != CACHE_FORMAT or content["key"] != key:
            return None, "rebuilt: stale"
        ok = [p for p in paths if str(p) not in failed]
        if files != [str(p) for p in ok] or lengths.numel() != len(ok):
            return None, "rebuilt: inconsistent"
        if int(lengths.sum()) != data.numel() or bool((lengths <= 0).any()):
            return None, "rebuilt: inconsistent"
    except Exception as error:  # any unreadable cache is rebuilt, whatever the cause
        return None, f"rebuilt: corrupt ({type(error).__name__})"
    decoded: dict[Path, Tensor | str] = {Path(p): reason for p, reason in failed.items()}
    decoded.update(zip(ok, torch.split(data, lengths.tolist()), strict=True))
    return decoded, "hit"


def _write_cache(file: Path, key: str, paths: list[Path], decoded: dict) -> None:
    ok = [p for p in paths if isinstance(decoded[p], Tensor)]
    content = {
        "format": CACHE_FORMAT,
        "key": key,
        "files": [str(p) for p in ok],
        "lengths": torch.tensor([decoded[p].numel() for p in ok], dtype=torch.int64),
        "data": torch.cat([decoded[p] for p in ok]) if ok else torch.zeros(0),
        "failed": {str(p): decoded[p] for p in paths if not isinstance(decoded[p], Tensor)},
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(file)
    atomic_write(file, lambda f: torch.save(content, f))


# A temp file this old is a killed writer's leftover, not another process's write in progress.
_STALE_TEMP_SECONDS = 600


def _remove_stale_temps(file: Path) -> None:
    now = time.time()
    for temp in file.parent.glob(temp_glob(file)):
        try:
            if now - temp.stat().st_mtime > _STALE_TEMP_SECONDS:
                temp.unlink()
        except OSError:
            pass  # gone already, or not ours to remove
