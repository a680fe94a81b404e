"""Inference: emotion probabilities for clips, files and long recordings.

:class:`Predictor` loads a trained model once (the bundled one, any checkpoint training
wrote, or a model in memory), keeps it and its feature front-end on the device, and
classifies whatever it is given: one clip, a batch, a list of clips of different lengths, or
audio files. :func:`predict` is the one-call form (it caches a :class:`Predictor` per model and
device); :func:`predict_timeline` slides a window over a long recording and returns a
:class:`Timeline` (probabilities per window, merged segments, CSV and PNG).

How clips are batched (**length bucketing**): clips are grouped by their exact length in
samples (after resampling and the minimum-length padding) and each group runs as one batch
(in chunks of ``batch_size``). Clips of different lengths never share a padded batch, so no
clip is zero-padded to fit another, and the features' ``top_db`` floor is per clip: a clip's
answer does not depend on the other clips in the call. Two caveats, both at the level of
float rounding: CPU and GPU convolution kernels choose their blocking by batch size, so a clip
that shares its bucket with other clips of the same length can differ from a lone call in the
last bits (about 1e-7 in probability); ``batch_size=1`` removes that too (every clip runs
alone). A clip whose length no other clip in the call has is bit-identical to a lone call.

Input rules, everywhere in this module:

* arrays and tensors are mono waveforms, ``(time,)`` for one clip, ``(clips, time)`` for a
  batch (rows are clips, not channels: downmix stereo arrays yourself); ``sample_rate`` (Hz)
  is required for them and they are resampled to the model's rate with
  :func:`emohrnet_fast.audio.resample` (soxr HQ), clip by clip;
* paths (``str`` or ``os.PathLike``) are decoded with :func:`emohrnet_fast.audio.load` at the
  model's rate, channels averaged; their own header gives their rate;
* floating samples (float16, bfloat16, float32, float64) are taken as they are (nominally in
  [-1, 1]); **int16 is 16-bit PCM and is scaled by 1/32768**; other integer types are
  rejected (their scale is ambiguous), as are bool and complex samples;
* a clip shorter than the model's minimum (``(model.min_size - 1) * hop_length`` samples:
  the networks downsample the time axis by ``min_size``) is zero-padded at its end to that
  minimum, with a ``UserWarning``.

The bundled model is ``emohrnet_fast/assets/default/`` (``model="default"``); its
``checkpoint.json`` may hold a ``card`` object (:func:`emohrnet_fast.export.export_fold` writes
it: ``name``, ``training_corpus``, ``protocol``, ``cv_ua``, ``cv_wa`` as fractions in [0, 1],
...), which ``emohrnet-fast info`` summarises. Demo clips
are ``emohrnet_fast/assets/demo/*.wav`` with ``labels.csv`` (``file,label,speaker``), read by
:func:`demo_clips`.

The Predictor runs an inference copy of the model with every BatchNorm folded into the
convolution before it (:func:`emohrnet_fast.models.base.fold_batchnorm`): the same logits up to
float rounding (relative 1e-6), one kernel less per convolution; the copy is channels_last,
as in training. The copy is made again when the model changes: a submodule
added or replaced, weights replaced (``.to()``, ``.half()``, ``load_state_dict(assign=True)``)
or updated in place (``load_state_dict``, an optimizer step; writes through ``.data`` are not
seen).

On CUDA, a forward pass whose ``(clips, samples)`` shape was already run once is captured
as a CUDA graph (front-end + model, after a warm-up on a side stream) and replayed from then
on: the models are launch-bound (many small convolutions), and one replay replaces hundreds of
launches. Shapes seen once run eagerly, so one-off lengths pay no capture; the first
``_GRAPH_CACHE`` shapes seen twice get graphs, and later ones run eagerly (evicting a graph for
a new shape would, with more recurring shapes than that, recapture on every call); a shape
whose capture fails (e.g. out of memory) runs eagerly from then on, with a warning. Capture
and replay run on the Predictor's own GPU, whichever device is current, and one thread at a
time (the graphs' input and output buffers are shared). A graph replays the memory it
captured, so when the inference copy is made again the graphs are dropped and shapes start
again. ``Predictor(cuda_graphs=False)`` turns this off.

``Predictor(compile=True)`` runs the model's logits (not the front-end, which is already one
kernel, nor :meth:`Predictor.embeddings`) through ``torch.compile`` (Inductor, its weights
frozen into the graph as constants), under the same rule: a shape is compiled the second time
it runs (seconds: 5-7 s for EmoHRNet-small on 2 CPU cores), the first ``_COMPILE_CACHE``
shapes seen twice are compiled, later ones and shapes whose compilation failed (with a
warning) run eagerly. Compiled calls take one thread at a time, process-wide. On the CPU this
is where single-clip latency comes from: eager oneDNN convolutions re-lay out their weights on
every call, the frozen graph packs them once (EmoHRNet-small, one 2-s clip on a 2-core Intel
Xeon: 18.5 ms eager and 15.4 ms compiled in fp32, 9.3 ms compiled in bf16; BENCHMARKS.md).
Compiled logits equal eager ones up to float rounding.
"""

from __future__ import annotations

import contextlib
import csv
import math
import numbers
import operator
import os
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from emohrnet_fast import audio as _audio
from emohrnet_fast import checkpoint
from emohrnet_fast._files import atomic_write
from emohrnet_fast._info import resolve_device
from emohrnet_fast.models.base import EmotionModel, fold_batchnorm
from emohrnet_fast.speaker_norm import SpeakerStats, band_moments, speaker_scale

if TYPE_CHECKING:
    from types import FrameType

    from emohrnet_fast.ensemble import EnsemblePredictor

Precision = Literal["auto", "fp32", "bf16"]
ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_DIR = ASSETS / "demo"
DEMO_LABELS = "labels.csv"
_CACHE_SIZE = 4  # Predictors kept by predict() / predict_timeline(): (model, device, precision)
_GRAPH_CACHE = 8  # CUDA graphs a Predictor captures (one per (clips, samples) shape)
_COMPILE_CACHE = 8  # shapes a Predictor(compile=True) compiles
_COMPILE_LOCK = threading.Lock()  # compiled calls patch torch's global compiler config
# Each Predictor, fold and shape recompiles the same code: dynamo's default limit (8 per code
# object) would silently send later ones to eager.
_RECOMPILE_LIMIT = 64
# A (clips, time) batch of at most this many samples per clip, and more clips than that, is
# multichannel audio read as (frames, channels) (7.1 sound has 8), not a batch of clips.
_MAX_CHANNELS = 8

AudioInput = Any  # path | array | tensor | list of those; see the module docstring


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Segment:
    """Consecutive windows of a :class:`Timeline` with the same top label, merged."""

    start: float  # s; segments tile [0, duration] without overlap (see Timeline.segments)
    end: float  # s
    label: str  # the top label of every window in it
    score: float  # mean probability of ``label`` over its windows
    scores: dict[str, float]  # mean probability of every label over its windows
    windows: tuple[int, int]  # [first, last) window indices


@dataclass(frozen=True, eq=False)
class Timeline:
    """Emotion probabilities of a long recording, one row per window.

    Window ``k`` covers ``[starts[k], ends[k])`` seconds of the recording (``ends`` stops at
    the recording's end; the last window is zero-padded past it).
    """

    labels: tuple[str, ...]  # class names, the columns of ``probabilities``
    starts: Tensor  # (n_windows,) float64, s
    ends: Tensor  # (n_windows,) float64, s
    probabilities: Tensor  # (n_windows, n_classes) float32, rows sum to 1
    duration: float  # s, the recording's length
    window_s: float  # window length, s (as used: a whole number of samples)
    hop_s: float  # hop between window starts, s (as used)

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def top(self) -> list[str]:
        """The most probable label of each window."""
        return [self.labels[i] for i in self.probabilities.argmax(dim=1).tolist()]

    @property
    def segments(self) -> list[Segment]:
        """Runs of consecutive windows with the same top label, merged.

        Window ``k`` speaks for the span around its centre up to half-way to its neighbours'
        centres (the first window from 0 s, the last to the end), so the segments tile
        ``[0, duration]`` without overlap even though the windows overlap.
        """
        n = len(self)
        if n == 0:
            return []
        top = self.probabilities.argmax(dim=1).tolist()
        # Boundary between windows k and k+1: half-way between their centres.
        centres = self.starts + self.window_s / 2
        cuts = [0.0, *((centres[:-1] + centres[1:]) / 2).tolist(), self.duration]
        cuts = [min(max(c, 0.0), self.duration) for c in cuts]
        segments, first = [], 0
        for k in range(1, n + 1):
            if k < n and top[k] == top[first]:
                continue
            mean = self.probabilities[first:k].double().mean(dim=0).tolist()
            label = self.labels[top[first]]
            segments.append(
                Segment(
                    start=cuts[first],
                    end=cuts[k],
                    label=label,
                    score=mean[top[first]],
                    scores=dict(zip(self.labels, mean, strict=True)),
                    windows=(first, k),
                )
            )
            first = k
        return segments

    def to_csv(self, path: str | os.PathLike, *, segments: bool = False) -> Path:
        """Write :meth:`csv_text` to ``path`` (atomically; parent folders are made)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.csv_text(segments=segments).encode())
        return path

    def csv_text(self, *, segments: bool = False) -> str:
        """CSV with one row per window (``start,end,label,score,<one column per label>``), or
        per segment with ``segments=True``; times in s, probabilities to 6 decimals."""
        header = ["start", "end", "label", "score", *self.labels]
        if segments:
            rows = [
                [s.start, s.end, s.label, s.score, *(s.scores[name] for name in self.labels)]
                for s in self.segments
            ]
        else:
            rows = [
                [start, end, label, max(p), *p]
                for start, end, label, p in zip(
                    self.starts.tolist(),
                    self.ends.tolist(),
                    self.top,
                    self.probabilities.tolist(),
                    strict=True,
                )
            ]
        lines = [",".join(header)]
        for row in rows:
            start, end, label, score, *rest = row
            values = [f"{start:.3f}", f"{end:.3f}", str(label), f"{score:.6f}"]
            lines.append(",".join(values + [f"{v:.6f}" for v in rest]))
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike) -> Path:
        """Write a PNG (matplotlib, Agg): each emotion's probability over time (at window
        centres), with the top label of each segment shaded along the bottom."""
        import io

        import matplotlib

        matplotlib.use("Agg")  # no display needed; a no-op when already set
        import matplotlib.pyplot as plt

        path = Path(path)
        centres = torch.clamp(self.starts + self.window_s / 2, max=self.duration).numpy()
        colours = plt.get_cmap("tab10" if len(self.labels) <= 10 else "tab20")
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=120)
        for i, name in enumerate(self.labels):
            ax.plot(
                centres,
                self.probabilities[:, i].numpy(),
                label=name,
                color=colours(i),
                marker="." if len(self) < 60 else None,
            )
        index = {name: i for i, name in enumerate(self.labels)}
        for segment in self.segments:
            ax.axvspan(
                segment.start, segment.end, ymin=0, ymax=0.04, color=colours(index[segment.label])
            )
        ax.set_xlim(0, max(self.duration, 1e-3))
        ax.set_ylim(0, 1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.set_title(f"{self.window_s:g}-s windows every {self.hop_s:g} s")
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buffer.getvalue())
        return path


class DemoClip(NamedTuple):
    """One bundled demo clip (a row of ``labels.csv``)."""

    path: Path
    label: str
    speaker: str | None


# --------------------------------------------------------------------------- predictor
_VERSION = operator.attrgetter("_version")


class _WeightsWatch:
    """A fingerprint of some modules' tree and of the parameters and buffers under them: it
    changes when a submodule is added or replaced, when a tensor is replaced
    (``load_state_dict(assign=True)``), moved or cast (``.to()``, ``.half()``: new storage,
    a new address) or updated in place (an optimizer step, ``load_state_dict``: the version
    counter; not writes through ``.data``, which bypass it).

    The Predictor reads it on every call, so the module tree is walked only when it changes
    (a submodule added or replaced); otherwise the modules' own tensor tables are re-read
    with C-level ``map`` calls. EmoHRNet-small (556 tensors, one core of the 2-core CPU):
    0.13 ms a call, against 0.33 ms for a walk by hand and 1.6 ms through ``parameters()`` and
    ``buffers()``.
    """

    def __init__(self, *roots: nn.Module) -> None:
        self._roots = roots
        self._module_tables: list[dict] = []
        self._tensor_tables: list[dict] = []
        self._children: tuple = ()
        self._trees = 0  # walks so far: part of the key, so a changed tree changes it

    def _current_children(self) -> tuple:
        return tuple(child for table in self._module_tables for child in table.values())

    def key(self) -> tuple:
        if not self._module_tables or self._current_children() != self._children:
            self._module_tables, self._tensor_tables = [], []
            stack = list(self._roots)
            while stack:
                module = stack.pop()
                self._module_tables.append(module._modules)
                self._tensor_tables += (module._parameters, module._buffers)
                stack.extend(child for child in module._modules.values() if child is not None)
            self._children = self._current_children()
            self._trees += 1
        tensors = [t for table in self._tensor_tables for t in table.values() if t is not None]
        try:
            versions = tuple(map(_VERSION, tensors))
        except RuntimeError:  # inference tensors have no version counter
            versions = tuple(0 if t.is_inference() else t._version for t in tensors)
        return self._trees, tuple(map(Tensor.data_ptr, tensors)), versions


class Predictor:
    """A trained model, loaded once, that classifies clips and files.

    Args:
        model: ``"default"`` (the bundled model), a checkpoint folder, its
            ``model.safetensors``, a training run folder (its best epoch), or an
            :class:`~emohrnet_fast.models.base.EmotionModel` in memory (moved to ``device``
            when one is given; it runs as an eval-mode copy with its BatchNorms folded, so
            its own training mode is never touched).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``None``: CUDA when usable, else the CPU
            (for a model in memory: the device it is on).
        precision: ``"bf16"``: the model runs under bfloat16 autocast (on CUDA, or on a CPU
            with bf16 matrix units such as Intel AMX, where the bundled model ran B=256 1.4x
            faster than fp32; elsewhere the CPU may be slower); ``"fp32"``: it does not;
            ``"auto"`` (the default): bf16 on CUDA, fp32 on the CPU. Features are always
            computed in float32. On an H200 bf16 ran B=256 2-s clips 1.24x (EmoHRNet-small)
            and 1.09x (the bundled CNN) faster than fp32, with probabilities within 0.03 of
            fp32's (2026-12-04).
        batch_size: most clips per forward pass (a bucket of equal-length clips is split into
            chunks of this size); ``1`` runs every clip alone.
        cuda_graphs: on CUDA, capture a shape's forward pass as a CUDA graph the second time
            it runs and replay it after that (see the module docstring); ignored on the CPU.
        compile: run the model through ``torch.compile`` (weights frozen), a shape compiled
            the second time it runs (see the module docstring): faster repeated calls, seconds
            of compilation per new shape. Off by default.

    Calling it (``predictor(audio, sample_rate)``) returns ``[{"label", "score"}, ...]``
    sorted by score, highest first, for one clip, and a list of those for a batch, a list of
    clips or a list of paths. Scores are ``softmax(logits / model.temperature)``: calibrated
    probabilities when the model's temperature was fitted on held-out speakers
    (:func:`emohrnet_fast.calibrate`; the bundled model's card gives its ECE), plain softmax
    (temperature 1) otherwise. See the module docstring for the input rules and how clips
    are batched.

    Raises:
        ValueError: an unknown model name (the message lists the bundled ones), a bad
            ``device``, ``precision`` or ``batch_size``.
        FileNotFoundError: a checkpoint path that does not exist, or ``"default"`` in an
            installation without a bundled model.
        emohrnet_fast.checkpoint.CheckpointError: a folder that holds no usable checkpoint.
    """

    def __init__(
        self,
        model: str | os.PathLike | EmotionModel = checkpoint.BUNDLED_NAME,
        device: torch.device | str | None = None,
        precision: Precision = "auto",
        *,
        batch_size: int = 64,
        cuda_graphs: bool = True,
        compile: bool = False,
    ) -> None:
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision={precision!r}: expected 'auto', 'fp32' or 'bf16'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1")
        self.source: Path | None  # the checkpoint folder, None for a model in memory
        if isinstance(model, nn.Module):
            plain = checkpoint.emotion_model(model)
            if device is None:
                first = next(plain.parameters(), None)
                device = first.device if first is not None else torch.device("cpu")
            self.device = resolve_device(device)
            self.model = plain.to(self.device)
            self.source = None
        else:
            self.device = resolve_device(device)
            self.source = checkpoint_folder(model)
            self.model = checkpoint.load_model(self.source, self.device)
        from emohrnet_fast.features import FrontEnd

        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.precision: Literal["fp32", "bf16"] = precision
        self.batch_size = batch_size
        self.cuda_graphs = bool(cuda_graphs) and self.device.type == "cuda"
        self.compile = bool(compile)
        self._shapes_seen: set[tuple[int, ...]] = set()
        # The compiled model of the current fold, and the shapes allowed to run through it.
        self._compiled: Callable[[Tensor], Tensor] | None = None
        self._compiled_shapes: set[tuple[int, ...]] = set()
        self._compile_failed: set[tuple[int, ...]] = set()
        # shape -> (graph, static input, static logits)
        self._graphs: dict[tuple[int, ...], tuple[Any, Tensor, Tensor]] = {}
        self._capture_failed: set[tuple[int, ...]] = set()
        # Replays share their buffers: a second thread's replay must wait for the copy-out.
        self._graph_lock = threading.Lock()
        plain = self.model
        # The model as it runs here: fold_batchnorm's copy, made again by _refold() whenever
        # the weights' fingerprint changes (they were replaced or updated).
        self._folded: EmotionModel = plain
        self._folded_key: tuple | None = None
        self.labels: tuple[str, ...] = (
            tuple(plain.labels)
            if plain.labels is not None
            else tuple(f"class_{i}" for i in range(plain.num_classes))
        )
        self.frontend_config = plain.default_frontend
        self.sample_rate: int = self.frontend_config.sample_rate
        self.frontend = FrontEnd(self.frontend_config).to(self.device)
        self._weights = _WeightsWatch(self.model, self.frontend)
        min_frames = int(getattr(plain, "min_size", 1))
        self.min_samples: int = self.frontend_config.min_samples(min_frames)
        # The statistics of the speaker being heard (adapt), for speaker-normalised models.
        self.speaker: SpeakerStats | None = None
        self._warned_unadapted = False

    def __repr__(self) -> str:
        source = str(self.source) if self.source is not None else "<in memory>"
        return (
            f"Predictor(model={source!r}, device='{self.device}', precision={self.precision!r}, "
            f"labels={list(self.labels)})"
        )

    # ------------------------------------------------------------------ public calls
    def __call__(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        *,
        top_k: int | None = None,
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """``[{"label": str, "score": float}, ...]`` sorted by score, highest first (the
        ``top_k`` best; ``None``: every class) for one clip or path; a list of those for a
        batch, a list of clips or a list of paths.

        Raises:
            TypeError: an unsupported input type or sample type (bool, complex, integers
                other than int16).
            ValueError: ``sample_rate`` missing for arrays/tensors, rank > 2, an empty clip,
                NaN/Inf samples (the message names the clip), a bad ``top_k``.
            FileNotFoundError / emohrnet_fast.audio.AudioDecodeError: a path that does not
                exist or holds no usable audio (the message names it).
        """
        _check_top_k(top_k)
        probabilities, single = self._run(audio, sample_rate)
        results = [_ranked(row, self.labels, top_k) for row in probabilities.tolist()]
        return results[0] if single else results

    def adapt(self, audio: AudioInput | None, sample_rate: int | None = None) -> Predictor:
        """Tell a speaker-normalised model (``TrainConfig(speaker_norm=True)``) whose voice
        it hears: later calls standardise their features with the per-band statistics of
        ``audio``, unlabelled speech of that one speaker (any clips, arrays or paths, as for
        :meth:`__call__`; all pooled; a few tens of seconds are plenty). ``None`` forgets
        them. Returns the Predictor, for ``Predictor(path).adapt(clips)(clip, rate)``.

        Raises:
            ValueError: the model was trained without speaker normalisation, ``audio`` holds
                no clips, or any error :meth:`__call__` raises for the same input.
        """
        if not self.model.speaker_norm:
            raise ValueError(
                "adapt(): this model was trained without speaker normalisation "
                "(TrainConfig.speaker_norm=False), so its features need no speaker statistics"
            )
        speaker = None
        if audio is not None:
            clips, _ = self._clips(audio, sample_rate, pad=True)
            if len(clips) == 0:
                raise ValueError("adapt(): audio holds no clips")
            with torch.inference_mode():
                moments = sum(
                    band_moments(self.frontend(clip.to(self.device, torch.float32)[None]))
                    for clip in clips
                )
            assert isinstance(moments, Tensor)  # clips is not empty
            speaker = SpeakerStats.from_moments(moments[:, 0])
        with self._graph_lock:  # not while another thread replays
            self.speaker = speaker
            self._graphs.clear()  # they read the previous statistics' memory
            self._shapes_seen.clear()
        return self

    def logits(self, audio: AudioInput, sample_rate: int | None = None) -> Tensor:
        """Logits, float32 on the CPU: ``(n_classes,)`` for one clip or path,
        ``(clips, n_classes)`` for a batch or a list."""
        logits, single = self._logits(audio, sample_rate)
        return logits[0] if single else logits

    def probabilities(self, audio: AudioInput, sample_rate: int | None = None) -> Tensor:
        """Scores (softmax of logits / the model's temperature), shaped as :meth:`logits`."""
        probabilities, single = self._run(audio, sample_rate)
        return probabilities[0] if single else probabilities

    def embeddings(self, audio: AudioInput, sample_rate: int | None = None) -> Tensor:
        """The model's embedding of each clip, float32 on the CPU: ``(embedding_dim,)`` for
        one clip or path, ``(clips, embedding_dim)`` for a batch or a list. It is what the
        classifier reads (EmoHRNet: its hidden layer's ReLU activations, 256-d in
        ``emohrnet_small``; the center-loss CNN: the 128-d vector its center loss clusters by
        emotion), for retrieval, clustering or a new classifier on top. Clips are checked,
        resampled, padded and batched as :meth:`__call__` does them (no CUDA graphs here).
        """
        embeddings, single = self._per_clip(
            audio, sample_rate, self._batch_embeddings, self.model.embedding_dim
        )
        return embeddings[0] if single else embeddings

    def timeline(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        *,
        window_s: float = 2.0,
        hop_s: float = 0.5,
    ) -> Timeline:
        """Classify every ``window_s``-second window, ``hop_s`` seconds apart, of one long
        clip or file, all windows in one batched pass (chunks of ``batch_size``).

        Windows start at 0, ``hop_s``, ``2 * hop_s``, ... until one reaches the end (or,
        with ``hop_s > window_s``, while they start inside the clip); the last is zero-padded
        past the end. A clip shorter than one window gives a single window, the clip itself
        (scored as :meth:`__call__` scores it, not padded with silence to ``window_s``),
        with a ``UserWarning``.

        Raises:
            ValueError: more than one clip, ``window_s`` / ``hop_s`` not positive and finite,
                and the errors of :meth:`__call__`.
        """
        for name, value in (("window_s", window_s), ("hop_s", hop_s)):
            if (
                isinstance(value, bool | np.bool_)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name}={value!r}: expected a positive number of seconds")
        clips, single = self._clips(audio, sample_rate, pad=False)
        if not single:
            raise ValueError(
                "predict_timeline: expected one clip (a 1-D array or tensor, or a path), got "
                f"a batch or list of {len(clips)}; call it once per recording"
            )
        waveform = clips[0]
        rate, length = self.sample_rate, waveform.numel()
        window = max(1, round(window_s * rate))
        hop = max(1, round(hop_s * rate))
        if length < window:
            # Silence padded up to the window would change what the model hears: the one
            # window is the clip itself, scored as predict() scores it.
            _warn(
                f"audio of {length / rate:.3f} s is shorter than window_s={window_s:g}: one "
                "window, the whole clip (as predict() scores it)"
            )
            count, windows = 1, waveform[None]
        else:
            # ceil: the last window reaches the end; but with hop_s > window_s that count
            # could add a window starting past the end, so every start stays inside.
            count = min(1 + -(-(length - window) // hop), 1 + (length - 1) // hop)
            padded = torch.nn.functional.pad(waveform, (0, (count - 1) * hop + window - length))
            windows = padded.unfold(0, window, hop)  # (count, window), a view
        if windows.shape[1] < self.min_samples:
            what = "the clip is" if length < window else f"each {window / rate:g}-s window is"
            _warn_short(what, windows.shape[1], self)
            windows = torch.nn.functional.pad(windows, (0, self.min_samples - windows.shape[1]))
        logits = _finite(self.batch_logits(windows))
        starts = torch.arange(count, dtype=torch.float64) * hop / rate
        ends = torch.clamp(starts + window / rate, max=length / rate)
        return Timeline(
            labels=self.labels,
            starts=starts,
            ends=ends,
            probabilities=self._scores(logits),
            duration=length / rate,
            window_s=window / rate,
            hop_s=hop / rate,
        )

    # ------------------------------------------------------------------ internals
    def _run(self, audio: AudioInput, sample_rate: int | None) -> tuple[Tensor, bool]:
        logits, single = self._logits(audio, sample_rate)
        return self._scores(logits), single

    def _scores(self, logits: Tensor) -> Tensor:
        # Read each call: calibrate() on an in-memory model takes effect at once.
        return torch.softmax(logits / self.model.temperature, dim=1)

    def _logits(self, audio: AudioInput, sample_rate: int | None) -> tuple[Tensor, bool]:
        logits, single = self._per_clip(audio, sample_rate, self.batch_logits, len(self.labels))
        return _finite(logits), single

    def _per_clip(
        self,
        audio: AudioInput,
        sample_rate: int | None,
        run: Callable[[Tensor], Tensor],
        width: int,
    ) -> tuple[Tensor, bool]:
        """``run`` (``(clips, samples)`` -> ``(clips, width)`` on the CPU) over every clip of
        ``audio``, batched by length, in input order; and whether ``audio`` was one clip."""
        clips, single = self._clips(audio, sample_rate, pad=True)
        if isinstance(clips, Tensor):  # a (clips, time) batch: equal lengths, one tensor
            return run(clips), single
        buckets: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            buckets.setdefault(clip.numel(), []).append(i)
        out = torch.empty(len(clips), width)
        for length in sorted(buckets):
            members = buckets[length]
            devices = {clips[i].device for i in members}
            home = devices.pop() if len(devices) == 1 else self.device  # stack, then copy once
            out[members] = run(torch.stack([clips[i].to(home) for i in members]))
        return out, single

    def batch_logits(self, rows: Tensor) -> Tensor:
        """``(clips, samples)`` equal-length float waveforms, already at the model's rate, on
        any device -> ``(clips, n_classes)`` float32 logits on the CPU, ``batch_size`` rows
        per forward pass. No input checks, resampling or padding: the fast path for callers
        that did those (evaluation, timelines)."""
        return self._batched(rows, embeddings=False)

    def _batch_embeddings(self, rows: Tensor) -> Tensor:
        return self._batched(rows, embeddings=True)

    def _batched(self, rows: Tensor, *, embeddings: bool) -> Tensor:
        out = []
        # With CUDA graphs, one thread at a time: replays share their buffers, and a refold
        # drops the graphs.
        with self._graph_lock if self.cuda_graphs else contextlib.nullcontext():
            self._refold()
            if self.model.speaker_norm and self.speaker is None and not self._warned_unadapted:
                self._warned_unadapted = True
                _warn(
                    "this model was trained with speaker normalisation and has no speaker "
                    "statistics yet: call Predictor.adapt(clips of the speaker) first; until "
                    "then its features get the training set's global normalisation, which it "
                    "was not trained on (expect lower accuracy)"
                )
            with torch.inference_mode():
                for chunk in rows.split(self.batch_size):
                    batch = chunk.to(self.device, torch.float32, non_blocking=True).contiguous()
                    if embeddings:
                        result = self._classify(batch, embeddings=True)
                    else:
                        shape = tuple(batch.shape)
                        repeat = shape in self._shapes_seen
                        self._shapes_seen.add(shape)
                        compiled = repeat and self._compiles(shape)
                        graphed = repeat and self._graphed(shape)
                        replayed = self._replay(batch, compiled=compiled) if graphed else None
                        result = (
                            replayed
                            if replayed is not None
                            else self._classify(batch, compiled=compiled)
                        )
                    out.append(result.float().cpu())
        if not out:
            width = self.model.embedding_dim if embeddings else len(self.labels)
            return torch.empty(0, width)
        return torch.cat(out)

    def _classify(
        self, batch: Tensor, *, embeddings: bool = False, compiled: bool = False
    ) -> Tensor:
        """``(clips, samples)`` float32 on the device -> logits (front-end + model, the model
        compiled when ``compiled``), or the model's embeddings."""
        features = self.frontend(batch)
        if self.speaker is not None:
            features = speaker_scale(features, self.speaker, self._folded.input_norm)
        features = features.unsqueeze(1)
        # No autocast weight cache: a graph must not keep casts made outside its capture.
        with torch.autocast(
            self.device.type,
            dtype=torch.bfloat16,
            enabled=self.precision == "bf16",
            cache_enabled=False,
        ):
            if embeddings:
                return self._folded.embedding(features)
            if compiled:
                logits = self._run_compiled(features, tuple(batch.shape))
                if logits is not None:
                    return logits
            return self._folded.classify(features)

    def _graphed(self, shape: tuple[int, ...]) -> bool:
        """Whether a shape seen before runs as a CUDA graph: it has a graph already, or there
        is room for one."""
        if not self.cuda_graphs or shape in self._capture_failed:
            return False
        return shape in self._graphs or len(self._graphs) < _GRAPH_CACHE

    def _compiles(self, shape: tuple[int, ...]) -> bool:
        """Whether a shape seen before runs compiled: compiled already, or there is room."""
        if not self.compile or shape in self._compile_failed:
            return False
        if shape not in self._compiled_shapes and len(self._compiled_shapes) >= _COMPILE_CACHE:
            return False
        self._compiled_shapes.add(shape)
        return True

    def _run_compiled(self, features: Tensor, shape: tuple[int, ...]) -> Tensor | None:
        """The compiled model's logits, or ``None`` where compiling failed (the caller runs
        the model eagerly, and this shape stays eager from now on)."""
        if self._compiled is None:
            # One shape per graph (no symbolic sizes): the frozen graph packs its convolution
            # weights for that input size.
            self._compiled = torch.compile(self._folded.classify, dynamic=False)
        # Freezing is read when a graph is compiled, i.e. inside this call (as torch.compile's
        # ``options`` it was ignored: no weight packing, no speed-up; torch 2.13). The patches
        # are process-wide: one thread at a time, or overlapping exits would restore each
        # other's values and leave them set.
        try:
            with (
                _COMPILE_LOCK,
                torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT),
                torch._inductor.config.patch(freezing=True),
            ):
                return self._compiled(features)
        except Exception as error:  # a compiler failure of any kind
            self._compiled_shapes.discard(shape)
            self._compile_failed.add(shape)
            _warn(
                f"torch.compile failed for a batch of shape {shape} "
                f"({type(error).__name__}: {_first_line(error)}); that shape runs eagerly "
                "from now on"
            )
            return None

    def _replay(self, batch: Tensor, *, compiled: bool = False) -> Tensor | None:
        """:meth:`_classify` through the CUDA graph of ``batch``'s shape (captured now if
        needed); the result is the graph's own output buffer, valid until the next replay.
        ``None`` where the capture failed: the caller runs the shape eagerly."""
        shape = tuple(batch.shape)
        entry = self._graphs.get(shape)
        if entry is None:
            try:
                entry = self._capture(batch, compiled=compiled)
            except RuntimeError as error:  # out of memory, or an op that cannot be captured
                torch.cuda.synchronize(self.device)
                self._capture_failed.add(shape)
                _warn(
                    f"CUDA graph capture failed for a batch of shape {shape} ({error}); that "
                    "shape runs without a graph from now on"
                )
                return None
            self._graphs[shape] = entry
        graph, static_in, static_out = entry
        static_in.copy_(batch)
        with torch.cuda.device(self.device):
            graph.replay()
        return static_out

    def _refold(self) -> None:
        """Make ``self._folded`` (the model with its BatchNorms folded into its convolutions,
        :func:`~emohrnet_fast.models.base.fold_batchnorm`) match the model's current weights.
        A new fold means new weight tensors, so the CUDA graphs, which replay the addresses
        they captured, are dropped too."""
        key = self._weights.key()
        if key != self._folded_key:
            # cuDNN's fast convolutions are NHWC; in NCHW it transposes around each one (2.2
            # of 12.8 ms for EmoHRNet-small at B=256 on an H200), and oneDNN's CPU ones are
            # faster so too. Training runs so as well.
            # torch's overloads of Module.to omit memory_format, which it accepts.
            self._folded = fold_batchnorm(self.model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._folded_key = key
            self._graphs.clear()
            self._shapes_seen.clear()
            self._capture_failed.clear()
            self._compiled = None
            self._compiled_shapes.clear()
            self._compile_failed.clear()

    def _capture(self, batch: Tensor, *, compiled: bool = False) -> tuple[Any, Tensor, Tensor]:
        static_in = batch.clone()
        # Everything on the Predictor's GPU, whichever device is current: torch's default
        # capture stream lives on the device that was current when the process first
        # captured, and kernels launched on another GPU would run outside the capture.
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(stream)
            with torch.cuda.stream(side):  # warm-up: cuDNN picks its algorithms outside capture
                for _ in range(2):
                    self._classify(static_in, compiled=compiled)
            stream.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                static_out = self._classify(static_in, compiled=compiled)
        return graph, static_in, static_out

    def _clips(
        self, audio: AudioInput, sample_rate: int | None, *, pad: bool
    ) -> tuple[list[Tensor] | Tensor, bool]:
        """Mono float32 waveforms at the model's rate (padded to the minimum length when
        ``pad``; tensors stay on their device, the rest is on the CPU), and whether ``audio``
        was a single clip. A non-empty ``(clips, time)`` batch stays one ``(clips, time)``
        tensor: splitting it into rows and stacking them again cost a Python step per clip
        and a copy of the batch."""
        rate = self.sample_rate
        if isinstance(audio, str | os.PathLike):
            clips, single = [_load_path(audio, rate)], True
        elif isinstance(audio, np.ndarray | Tensor):
            if audio.ndim == 0 or audio.ndim > 2:
                raise ValueError(
                    f"audio: expected shape (time,) for one clip or (clips, time) for a batch, "
                    f"got {tuple(audio.shape)} (rows are clips: downmix channels first)"
                )
            single = audio.ndim == 1
            if audio.ndim == 2 and audio.shape[1] <= _MAX_CHANNELS < audio.shape[0]:
                # soundfile / scipy read multichannel audio as (frames, channels): taken as
                # a batch it would be thousands of clips of a sample or two each.
                raise ValueError(
                    f"audio: shape {tuple(audio.shape)} looks like (frames, channels), as "
                    "soundfile.read returns multichannel audio; expected (time,) or (clips, "
                    "time): downmix first (audio.mean(axis=1)) or pass the channels as clips "
                    "(audio.T)"
                )
            samples = _as_float("audio", audio)
            if single:
                clips = [_checked("clip 0", samples, sample_rate, rate)]
            elif samples.shape[0] == 0:
                clips = []
            else:  # validated and resampled as one tensor: one host sync, not one per row
                batch = _checked(None, samples, sample_rate, rate)
                if pad and batch.shape[1] < self.min_samples:
                    _warn_short(_plural("clip", list(range(len(batch)))), batch.shape[1], self)
                    batch = torch.nn.functional.pad(batch, (0, self.min_samples - batch.shape[1]))
                return batch, False
        elif isinstance(audio, list | tuple):
            single, clips = False, []
            for i, item in enumerate(audio):
                if isinstance(item, str | os.PathLike):
                    clips.append(_load_path(item, rate))
                elif isinstance(item, np.ndarray | Tensor):
                    if item.ndim != 1:
                        raise ValueError(
                            f"clip {i}: expected a 1-D waveform in a list of clips, got shape "
                            f"{tuple(item.shape)}"
                        )
                    clips.append(
                        _checked(f"clip {i}", _as_float(f"clip {i}", item), sample_rate, rate)
                    )
                else:
                    raise TypeError(
                        f"clip {i}: expected a path, numpy array or torch tensor, got "
                        f"{type(item).__name__}"
                        + (" (wrap a list of samples in np.asarray)" if _is_number(item) else "")
                    )
        else:
            raise TypeError(
                "audio: expected a path, a numpy array or torch tensor ((time,) or (clips, "
                f"time)), or a list of those, got {type(audio).__name__}"
            )
        if pad:
            short = [i for i, c in enumerate(clips) if c.numel() < self.min_samples]
            if short:
                shortest = min(clips[i].numel() for i in short)
                _warn_short(_plural("clip", short), shortest, self)
                for i in short:
                    clips[i] = torch.nn.functional.pad(
                        clips[i], (0, self.min_samples - clips[i].numel())
                    )
        return clips, single


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _warn(message: str) -> None:
    """A UserWarning attributed to the first caller outside this package (the user's line,
    whatever the call depth inside the library)."""
    level = 2  # stacklevel 2 is _warn's caller
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("emohrnet_fast."):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)


def _finite(logits: Tensor) -> Tensor:
    """``logits`` (CPU), or a clear error where finite samples still overflowed float32 in
    the features (amplitudes near 1e19: a power spectrum beyond 3.4e38)."""
    bad = (~torch.isfinite(logits).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"{_plural('clip', bad)} too loud for float32 features (samples of 1e19 and more "
            "overflow the power spectrum), so the scores came out NaN or Inf: rescale the "
            "audio (expected amplitudes of order 1, or integer PCM scales)"
        )
    return logits


def _warn_short(subject: str, length: int, predictor: Predictor) -> None:
    rate, need = predictor.sample_rate, predictor.min_samples
    frames = getattr(predictor.model, "min_size", 1)
    _warn(
        f"{subject} shorter than the model's minimum of {need} samples ({need / rate:.3f} s at "
        f"{rate} Hz: the network needs {frames} frames); zero-padded at the end to that "
        f"length (shortest: {length} samples)"
    )


def _plural(what: str, indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:10])) + (", ..." if len(indices) > 10 else "")
    return f"{what} {shown} is" if len(indices) == 1 else f"{what}s {shown} are"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | complex | np.number)


def _as_float(what: str, samples: np.ndarray | Tensor) -> Tensor:
    """float32 tensor of ``samples`` on their device (numpy: the CPU), int16 PCM scaled by
    1/32768; TypeError for other sample types."""
    if isinstance(samples, np.ndarray):
        kind, dtype = samples.dtype.kind, samples.dtype
        if kind == "b" or kind == "c":
            raise TypeError(
                f"{what}: {'bool' if kind == 'b' else 'complex'} samples ({dtype}); expected "
                "real floating-point samples or int16 PCM"
            )
        if kind == "i" and dtype.itemsize == 2:  # either byte order ('>i2' from raw BE data)
            return torch.from_numpy(samples.astype(np.float32) / np.float32(32768.0))
        if kind in "iu":
            raise TypeError(
                f"{what}: {dtype} samples have no agreed scale; convert to floating point in "
                "[-1, 1] (int16 is taken as 16-bit PCM and scaled by 1/32768)"
            )
        if kind != "f":
            raise TypeError(f"{what}: {dtype} samples; expected floating-point audio")
        array = np.ascontiguousarray(samples, dtype=np.float32)
        if not array.flags.writeable:
            array = array.copy()
        return torch.from_numpy(array)
    if samples.is_meta:
        raise ValueError(f"{what}: a meta tensor holds no samples")
    if samples.dtype == torch.bool or samples.is_complex():
        raise TypeError(
            f"{what}: {samples.dtype} samples; expected real floating-point samples or int16 PCM"
        )
    if samples.dtype == torch.int16:
        return samples.detach().to(torch.float32) / 32768.0
    if not samples.is_floating_point():
        raise TypeError(
            f"{what}: {samples.dtype} samples have no agreed scale; convert to floating point "
            "in [-1, 1] (int16 is taken as 16-bit PCM and scaled by 1/32768)"
        )
    return samples.detach().to(torch.float32)  # stays on its device (resample copes)


def _checked(what: str | None, clip: Tensor, sample_rate: int | None, target: int) -> Tensor:
    """One float32 clip ``(time,)``, or with ``what=None`` a batch ``(clips, time)`` (errors
    name the clip), validated and resampled to ``target`` Hz."""
    if sample_rate is None:
        raise ValueError(
            "sample_rate is required for arrays and tensors (their rate in Hz; the "
            f"model runs at {target} Hz and resamples); files carry their own rate"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate={sample_rate!r}: expected a positive integer (Hz)")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate!r}: expected a positive integer (Hz)")
    if clip.shape[-1] == 0:
        raise ValueError(f"{what or 'clip 0'}: empty (0 samples)")
    # NaN and Inf reach the sum, so a finite sum clears every sample in one reduction (0.6
    # against 18 ms for 256 2-s clips on the 2-core CPU); only otherwise (or when huge finite
    # samples overflow it) are they checked one by one, to name the clip.
    if not bool(torch.isfinite(clip.sum())):
        finite = torch.isfinite(clip).all(dim=-1)
        if not bool(finite.all()):
            if what is None:
                what = f"clip {int((~finite).nonzero()[0, 0])}"
            raise ValueError(f"{what}: non-finite samples (NaN or Inf)")
    return _audio.resample(clip, int(sample_rate), target)


def _load_path(path: str | os.PathLike, rate: int) -> Tensor:
    waveform, _ = _audio.load(path, rate, mono=True)
    return waveform


def _ranked(row: list[float], labels: Sequence[str], top_k: int | None) -> list[dict[str, Any]]:
    order = sorted(range(len(row)), key=lambda i: -row[i])  # stable: ties keep class order
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": float(row[i])} for i in order]


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k={top_k!r}: expected None or an integer >= 1")


def checkpoint_folder(model: str | os.PathLike) -> Path:
    """The checkpoint folder a ``model=`` argument names: ``"default"`` (the bundled model) or
    a path that :func:`emohrnet_fast.checkpoint.resolve` accepts.

    Raises:
        TypeError: ``model`` is not a str or os.PathLike.
        ValueError: a bare name that is neither a bundled model nor an existing path.
        FileNotFoundError: a missing path, or ``"default"`` without a bundled model.
    """
    if not isinstance(model, str | os.PathLike):
        raise TypeError(
            f"model: expected 'default', a checkpoint path or an EmotionModel, got "
            f"{type(model).__name__}"
        )
    if (
        isinstance(model, str)
        and model != checkpoint.BUNDLED_NAME
        and not os.path.exists(model)
        and "/" not in model
        and os.sep not in model
    ):
        from emohrnet_fast.models import list_models

        bundled = (checkpoint.BUNDLED_DIR / checkpoint.META_FILE).is_file()
        hint = (
            f" ({model!r} is an architecture preset, not a trained model: train it with "
            "ef.train or emohrnet-fast train, then pass the run folder)"
            if model in list_models()
            else ""
        )
        raise ValueError(
            f"model={model!r}: not a bundled model and no such checkpoint path. Bundled models: "
            f"'{checkpoint.BUNDLED_NAME}'{'' if bundled else ' (absent from this installation)'}"
            f"; or pass a checkpoint folder, its model.safetensors or a training run folder"
            f"{hint}"
        )
    return checkpoint.resolve(model)


# --------------------------------------------------------------------------- one-call API
_PREDICTORS: OrderedDict[tuple, Predictor] = OrderedDict()
_PREDICTORS_LOCK = threading.Lock()


ModelChoice = str | os.PathLike | EmotionModel | Sequence[str | os.PathLike | EmotionModel]


def _predictor(
    model: ModelChoice, device: torch.device | str | None
) -> Predictor | EnsemblePredictor:
    """A cached Predictor per (checkpoint folder and its weights' mtime, device); a model in
    memory gets a fresh one (it loads nothing); a list of models, an
    :class:`~emohrnet_fast.ensemble.EnsemblePredictor` of those Predictors."""
    if isinstance(model, Sequence) and not isinstance(model, str):
        from emohrnet_fast.ensemble import EnsemblePredictor

        return EnsemblePredictor([_single_predictor(member, device) for member in model])
    return _single_predictor(model, device)


def _single_predictor(
    model: str | os.PathLike | EmotionModel, device: torch.device | str | None
) -> Predictor:
    if isinstance(model, nn.Module):
        return Predictor(model, device)
    folder = checkpoint_folder(model)
    resolved = resolve_device(device)
    try:
        stamp = (folder / checkpoint.MODEL_FILE).stat().st_mtime_ns
    except OSError:
        stamp = None  # load_model reports what is missing
    key = (str(folder), stamp, str(resolved))
    with _PREDICTORS_LOCK:
        predictor = _PREDICTORS.get(key)
        if predictor is not None:
            _PREDICTORS.move_to_end(key)
            return predictor
    predictor = Predictor(folder, resolved)
    with _PREDICTORS_LOCK:
        _PREDICTORS[key] = predictor
        while len(_PREDICTORS) > _CACHE_SIZE:
            _PREDICTORS.popitem(last=False)
    return predictor


def clear_cache() -> None:
    """Forget the Predictors that :func:`predict` and :func:`predict_timeline` keep."""
    with _PREDICTORS_LOCK:
        _PREDICTORS.clear()


def predict(
    audio: AudioInput,
    sample_rate: int | None = None,
    *,
    model: ModelChoice = checkpoint.BUNDLED_NAME,
    top_k: int | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Emotion of one clip or many: ``[{"label": str, "score": float}, ...]`` sorted by score
    (softmax probability), highest first, as the Hugging Face audio-classification pipeline.

    Args:
        audio: a 1-D array or tensor (one clip), a 2-D one (rows are clips), a list of clips
            of different lengths, a path, or a list of paths (decoded at the model's rate,
            channels averaged). int16 arrays are PCM, scaled by 1/32768.
        sample_rate: Hz of array/tensor audio (required for them; resampled to the model's
            rate). Files carry their own rate.
        model: ``"default"`` (bundled), a checkpoint / run folder, or an EmotionModel; a
            list of those: an ensemble, the mean of their probabilities
            (:class:`~emohrnet_fast.ensemble.EnsemblePredictor`).
        top_k: keep the ``top_k`` best labels per clip; ``None``: all of them.
        device: ``None``: CUDA when usable, else the CPU. On CUDA the model runs under
            bfloat16 autocast (``Predictor``'s ``precision="auto"``); use a ``Predictor``
            with ``precision="fp32"`` for float32 there.

    Returns:
        One list of ``{"label", "score"}`` for a single clip or path; a list of them (in input
        order) for a batch or a list.

    The model is loaded once per (model, device) and kept (the 4 most recent), so repeated
    calls do not reload it; :class:`Predictor` gives the same without the cache lookup.
    Clips are batched by length (see the module docstring): a clip's answer does not depend
    on the others. Errors: see :meth:`Predictor.__call__`.
    """
    _check_top_k(top_k)
    return _predictor(model, device)(audio, sample_rate, top_k=top_k)


def predict_timeline(
    audio: AudioInput,
    sample_rate: int | None = None,
    *,
    window_s: float = 2.0,
    hop_s: float = 0.5,
    model: ModelChoice = checkpoint.BUNDLED_NAME,
    device: torch.device | str | None = None,
) -> Timeline:
    """Emotion over time in one long clip or file: every ``window_s``-second window,
    ``hop_s`` seconds apart, classified in one batched pass. See :meth:`Predictor.timeline`;
    ``model`` as for :func:`predict` (a list: the ensemble's mean probabilities)."""
    return _predictor(model, device).timeline(audio, sample_rate, window_s=window_s, hop_s=hop_s)


# --------------------------------------------------------------------------- bundled assets
def demo_clips(folder: str | os.PathLike | None = None) -> list[DemoClip]:
    """The demo clips listed in ``labels.csv`` (``file,label,speaker``; ``speaker`` optional)
    of ``folder`` (default: the bundled ``emohrnet_fast/assets/demo/``).

    Raises:
        FileNotFoundError: no ``labels.csv`` there (no demo clips in this installation), or a
            listed file is missing.
        ValueError: ``labels.csv`` lacks the ``file`` / ``label`` columns or lists no clip.
    """
    root = Path(folder) if folder is not None else DEMO_DIR
    table = root / DEMO_LABELS
    if not table.is_file():
        where = "in this installation" if folder is None else f"in {root}"
        raise FileNotFoundError(f"no demo clips {where} (expected {table})")
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if not {"file", "label"} <= columns:
            raise ValueError(
                f"{table}: expected the columns file,label[,speaker], got "
                f"{','.join(reader.fieldnames or ()) or 'none'}"
            )
        clips = []
        for row in reader:
            if not (row.get("file") or "").strip():
                continue
            path = root / row["file"].strip()
            if not path.is_file():
                raise FileNotFoundError(f"{table}: lists {row['file']!r}, which is missing")
            speaker = (row.get("speaker") or "").strip() or None
            clips.append(DemoClip(path, (row.get("label") or "").strip(), speaker))
    if not clips:
        raise ValueError(f"{table}: lists no clips")
    return clips


def bundled_model_card() -> dict[str, Any] | None:
    """What ``emohrnet-fast info`` shows about the bundled model: ``None`` when there is
    none, else ``name``, ``model`` (architecture), ``labels``, ``path`` and, when
    ``checkpoint.json`` has a ``card``, ``training_corpus``, ``protocol``, ``cv_ua``,
    ``cv_wa``; ``temperature`` (1: uncalibrated).

    Raises:
        emohrnet_fast.checkpoint.CheckpointError: the bundled folder is incomplete.
    """
    folder = checkpoint.BUNDLED_DIR
    if not (folder / checkpoint.META_FILE).is_file():
        return None
    meta = checkpoint.read_meta(folder)
    card = meta.get("card")
    if not isinstance(card, dict):
        card = {}
    return {
        "name": card.get("name") or meta.get("model"),
        "model": meta.get("model"),
        "labels": meta.get("labels"),
        "training_corpus": card.get("training_corpus"),
        "protocol": card.get("protocol"),
        "cv_ua": card.get("cv_ua"),
        "cv_wa": card.get("cv_wa"),
        "temperature": meta.get("temperature", 1.0),
        "path": str(folder),
    }


def card_summary(card: dict[str, Any] | None) -> str:
    """One line for :func:`bundled_model_card`'s result."""
    if card is None:
        return "none"
    parts = [str(card["name"])]
    if card.get("model") and card["model"] != card["name"]:
        parts[0] += f" ({card['model']})"
    if card.get("training_corpus"):
        parts.append(f"trained on {card['training_corpus']}")
    scores = [
        f"{name} {100 * float(card[key]):.1f} %"
        for name, key in (("UA", "cv_ua"), ("WA", "cv_wa"))
        if isinstance(card.get(key), int | float)
    ]
    if scores:
        parts.append(f"{str(card.get('protocol') or 'cv').upper()} " + ", ".join(scores))
    if card.get("temperature", 1.0) != 1.0:
        parts.append(f"calibrated (T {float(card['temperature']):.2f})")
    return ", ".join(parts)


__all__ = [
    "DemoClip",
    "Predictor",
    "Segment",
    "Timeline",
    "bundled_model_card",
    "clear_cache",
    "demo_clips",
    "predict",
    "predict_timeline",
]
