"""Dataclass configs: the one place where defaults live."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from dataclasses import dataclass
from typing import Literal

MelScale = Literal["htk", "slaney"]
MelNorm = Literal["slaney"] | None
FeatureOutput = Literal["power", "log", "db"]

MAX_N_FFT = 8192
# Each FFT bin lies inside at most two Mel triangles: no allowed n_fft has more non-empty bands.
MAX_N_MELS = 2 * (MAX_N_FFT // 2 + 1)
_C_INT_MAX = 2**31 - 1  # sizes the compiled core takes as C ints


@dataclass(frozen=True)
class FrontEndConfig:
    """Feature front-end settings; the defaults are our EmoHRNet preset.

    Parameters follow ``torchaudio.transforms.MelSpectrogram`` (+ ``AmplitudeToDB``), with
    ``window='hann'`` (periodic), ``center=True`` and ``pad_mode='reflect'`` fixed. The
    config is validated on construction; every invalid setting raises ``ValueError`` naming
    the field.

    Differences from torchaudio, on purpose:

    * ``top_db`` clamps each example (waveform) on its own; torchaudio clamps a 3-D batch as
      one, so there a clip's features depend on the other clips in its batch.
    * ``mel_scale`` defaults to ``"slaney"`` (librosa's default), not torchaudio's ``"htk"``:
      with the HTK scale, 128 bands and ``n_fft=512`` at 16 kHz, band 0 holds no FFT bin
      (torchaudio warns and returns a constant row); we reject configs with empty bands, and
      the Slaney scale (linear below 1 kHz) gives every band at least one bin here.
    * ``output='db'`` uses ``10*log10`` for ``power=2`` and ``20*log10`` for ``power=1``, as
      ``AmplitudeToDB(stype='power' | 'magnitude')``.
    """

    sample_rate: int = 16000  # Hz of the input waveform
    n_fft: int = 512  # FFT size in samples: even, 2 ... 8192
    win_length: int | None = (
        None  # periodic Hann length (<= n_fft, zero-padded, centred); None: n_fft
    )
    hop_length: int = 160  # samples between frame starts; frames = 1 + time // hop_length
    f_min: float = 0.0  # Hz, lowest edge of the first Mel band
    f_max: float | None = None  # Hz, highest edge of the last band; None: sample_rate / 2
    n_mels: int | None = 128  # Mel bands; None: the linear spectrogram (n_fft // 2 + 1 bins)
    power: float = 2.0  # 2: power |X|^2, 1: magnitude |X|
    norm: MelNorm = None  # None or "slaney" (area normalisation of each band)
    mel_scale: MelScale = "slaney"  # "slaney" (linear below 1 kHz) or "htk" Hz-to-Mel mapping
    output: FeatureOutput = "db"  # "power", "log" (log(x + eps)) or "db"
    top_db: float | None = 80.0  # output="db" only: per-example floor at max_dB - top_db
    eps: float = 1e-6  # output="log": log(x + eps)
    amin: float = 1e-10  # output="db": multiplier * log10(max(x, amin))
    n_mfcc: int | None = None  # DCT-II (ortho) coefficients of the log/dB bands (MFCC)

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes) -> FrontEndConfig:
        """A copy with ``changes`` applied (and validated); unknown field names are errors."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"FrontEndConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def as_tuple(self) -> tuple:
        """The fields in order (``FrontEndConfig(*config.as_tuple()) == config``)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    @property
    def n_freqs(self) -> int:
        """FFT bins of the one-sided spectrum: ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def n_bands(self) -> int:
        """Rows before the optional DCT: ``n_mels``, or ``n_freqs`` without a Mel filterbank."""
        return self.n_mels if self.n_mels is not None else self.n_freqs

    @property
    def n_features(self) -> int:
        """Rows of the output: ``n_mfcc`` if set, else ``n_bands``."""
        return self.n_mfcc if self.n_mfcc is not None else self.n_bands

    @property
    def resolved_win_length(self) -> int:
        return self.win_length if self.win_length is not None else self.n_fft

    @property
    def resolved_f_max(self) -> float:
        return float(self.f_max) if self.f_max is not None else self.sample_rate / 2

    @property
    def clamps_top_db(self) -> bool:
        """Whether the per-example top_db floor applies (only to dB output)."""
        return self.applied_top_db is not None

    @property
    def applied_top_db(self) -> float | None:
        """``top_db`` (dB below each example's maximum) where its floor applies, else None."""
        return float(self.top_db) if self.output == "db" and self.top_db is not None else None

    @property
    def db_multiplier(self) -> float:
        return 10.0 if self.power == 2.0 else 20.0

    def num_frames(self, num_samples: int) -> int:
        """Frames of a waveform of ``num_samples`` samples (center=True)."""
        return 1 + num_samples // self.hop_length

    def min_samples(self, num_frames: int) -> int:
        """The fewest samples (at least 1) that give ``num_frames`` frames: the inverse of
        :meth:`num_frames` (``1 + samples // hop >= frames <=> samples >= (frames - 1) * hop``)."""
        return max(1, (num_frames - 1) * self.hop_length)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """An int or a float (a bool is neither here): what TrainConfig's rates and weights take."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """A real number (int, float, numpy scalar), not a bool, a string or None: comparisons
    with anything else raise TypeErrors that do not name the field."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate(c: FrontEndConfig) -> None:
    def fail(field: str, expected: str) -> None:
        raise ValueError(f"FrontEndConfig.{field}={getattr(c, field)!r}: expected {expected}")

    if not _is_int(c.sample_rate) or c.sample_rate <= 0:
        fail("sample_rate", "a positive integer (Hz)")
    if not _is_int(c.n_fft) or c.n_fft < 2 or c.n_fft % 2 or c.n_fft > MAX_N_FFT:
        fail("n_fft", f"an even integer from 2 to {MAX_N_FFT}")
    if c.win_length is not None and (not _is_int(c.win_length) or not 1 <= c.win_length <= c.n_fft):
        fail("win_length", f"None or an integer from 1 to n_fft={c.n_fft}")
    if not _is_int(c.hop_length) or not 1 <= c.hop_length <= _C_INT_MAX:
        fail("hop_length", f"an integer >= 1 and <= {_C_INT_MAX} (the kernels take a C int)")
    nyquist = c.sample_rate / 2
    if c.f_max is not None and not (_is_real(c.f_max) and 0 < c.f_max <= nyquist):
        fail("f_max", f"None or in (0, sample_rate / 2 = {nyquist:g}] Hz")
    if not (_is_real(c.f_min) and 0 <= c.f_min < c.resolved_f_max):
        fail("f_min", f"in [0, f_max = {c.resolved_f_max:g}) Hz")
    # The bound keeps a huge n_mels from building a huge filterbank before the empty-band check
    # (which explains any n_mels too large for this n_fft).
    if c.n_mels is not None and (not _is_int(c.n_mels) or not 1 <= c.n_mels <= MAX_N_MELS):
        fail("n_mels", f"None (linear spectrogram) or an integer from 1 to {MAX_N_MELS}")
    if isinstance(c.power, bool) or c.power not in (1.0, 2.0):
        fail("power", "1.0 (magnitude) or 2.0 (power)")
    if c.norm not in (None, "slaney"):
        fail("norm", "None or 'slaney'")
    if c.mel_scale not in ("htk", "slaney"):
        fail("mel_scale", "'htk' or 'slaney'")
    if c.output not in ("power", "log", "db"):
        fail("output", "'power', 'log' or 'db'")
    if c.top_db is not None and not (_is_real(c.top_db) and c.top_db >= 0):
        fail("top_db", "None or a number >= 0 (dB)")
    # Infinite eps / amin would turn every feature into the same constant.
    if not (_is_real(c.eps) and 0 < c.eps < math.inf):
        fail("eps", "a number > 0 and finite")
    if not (_is_real(c.amin) and 0 < c.amin < math.inf):
        fail("amin", "a number > 0 and finite")
    if c.n_mfcc is not None:
        if not _is_int(c.n_mfcc) or not 1 <= c.n_mfcc <= c.n_bands:
            fail("n_mfcc", f"None or an integer from 1 to the number of bands ({c.n_bands})")
        if c.output == "power":
            fail("output", "'log' or 'db' when n_mfcc is set (MFCCs are a DCT of log bands)")
    if c.n_mels is not None:
        # Local import: the filterbank module is the single source of the Mel formula.
        from emohrnet_fast.ops.mel import check_bands_nonempty

        check_bands_nonempty(c)


@dataclass(frozen=True)
class SpecAugmentConfig:
    """Masking policy of :class:`emohrnet_fast.augment.SpecAugment` (its defaults come from here).

    Two frequency masks of up to 27 bands (the SpecAugment paper's LibriSpeech-double policy)
    and two time masks of up to 10 % of the frames (our choice for 2-4 s emotion clips).
    """

    freq_masks: int = 2  # masks per example along the feature axis
    freq_width: int = 27  # largest frequency-mask width, in bands
    time_masks: int = 2  # masks per example along the frame axis
    time_width: int | float = 0.1  # largest time-mask width: frames (int) or a fraction of T
    mask_value: float | Literal["mean"] = 0.0  # fill value, or each example's mean
    p: float = 1.0  # probability that an example is masked at all

    def __post_init__(self) -> None:
        _validate_spec_augment(self)


def _validate_spec_augment(c: SpecAugmentConfig) -> None:
    # Messages say "SpecAugment": the module builds this config to validate its arguments.
    def fail(field: str, expected: str) -> None:
        raise ValueError(f"SpecAugment {field}={getattr(c, field)!r}: expected {expected}")

    for field in ("freq_masks", "freq_width", "time_masks"):
        if not _is_int(getattr(c, field)) or getattr(c, field) < 0:
            fail(field, "an integer >= 0")
    width = c.time_width
    if (
        isinstance(width, bool)
        or not isinstance(width, int | float)
        or (isinstance(width, int) and width < 0)
        or (isinstance(width, float) and not 0.0 <= width <= 1.0)
    ):
        fail("time_width", "an integer >= 0 (frames) or a fraction in [0, 1]")
    if c.mask_value != "mean" and not (
        isinstance(c.mask_value, int | float)
        and not isinstance(c.mask_value, bool)
        and math.isfinite(c.mask_value)
    ):
        fail("mask_value", "a finite number or 'mean'")
    if isinstance(c.p, bool) or not isinstance(c.p, int | float) or not 0.0 <= c.p <= 1.0:
        fail("p", "a probability in [0, 1]")


Optimizer = Literal["adam", "adamw"]
Schedule = Literal["constant", "cosine"]
Precision = Literal["fp32", "bf16"]
CompileMode = Literal["default", "reduce-overhead"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`emohrnet_fast.train` needs besides the data; saved in every checkpoint.

    Defaults follow the papers where they say (cross-entropy + Adam, SpecAugment for EmoHRNet;
    center loss + reconstruction for the center-loss CNN) and are our choices where they are
    silent (learning rate, schedule, batch size, epochs, clip length, loss weights).
    """

    model: str = "emohrnet_small"  # a name from emohrnet_fast.models.list_models()
    model_overrides: dict = dataclasses.field(default_factory=dict)  # model config fields
    frontend: FrontEndConfig | None = None  # None: the model preset's default_frontend
    clip_seconds: float = 2.0  # training crops (random) and validation windows (centred), s
    # Score validation and test utterances whole, as predict() does, not in centred
    # clip_seconds windows: for training on crops shorter than the utterances. Only utterances
    # of equal length share a forward pass, so a corpus of many lengths evaluates slower.
    eval_whole: bool = False
    # "auto": SpecAugmentConfig() for models whose paper trains with it (EmoHRNet), None for
    # the others (the center-loss CNN; frequency masks also make little sense on MFCCs).
    spec_augment: SpecAugmentConfig | Literal["auto"] | None = "auto"
    normalize: bool = True  # standardise features with the training set's mean and std
    optimizer: Optimizer = "adam"  # "adam" (the papers) or "adamw" (decoupled weight decay)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # L2 (adam) or decoupled (adamw)
    schedule: Schedule = "cosine"  # per-step learning rate: "constant" or "cosine" decay
    warmup_steps: int = 0  # linear warm-up steps before the schedule
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    # mixup (Zhang et al. 2018) on the features: each step mixes the batch with a shuffled copy
    # of itself, lam ~ Beta(mixup, mixup), and the loss mixes the two labels' cross-entropies.
    # 0: off. Not with the center loss (a mixed clip has no single class centre).
    mixup: float = 0.0
    # Speed perturbation (Ko et al. 2015) of the training crops: each plays at a rate drawn
    # uniformly from [1 - r, 1 + r], which shifts pitch and formants together as a different
    # speaker's voice would; a regulariser for speaker-independent protocols. 0: off.
    speed_perturb: float = 0.0
    # Weight each class's cross-entropy by n / (classes * n_class) of the training set, so
    # every class counts alike: the loss then aims at UA (mean recall) rather than WA.
    balance_classes: bool = False
    # Speaker normalisation (emohrnet_fast.speaker_norm): each speaker's features standardised
    # per band with that speaker's own statistics. The model then needs the statistics of the
    # speaker it hears (Predictor.adapt; evaluate does it per speaker of the dataset), so its
    # test figures are "speaker-normalised": they use each test speaker's unlabelled audio
    # (cross_validate: its training audio, for a test speaker who also trained).
    speaker_norm: bool = False
    # Exponential moving average of the weights (Polyak averaging): the averaged copy is the
    # model that validates, is saved and is returned; the optimised weights only feed it.
    # 0: off; e.g. 0.999. The decay warms up as min(ema_decay, (1 + step) / (10 + step)), so
    # the first steps' random weights fade out fast.
    ema_decay: float = 0.0
    # Knowledge distillation (Hinton et al. 2015) from teacher models passed to train(): the
    # loss is (1 - distill_weight) x the hard-label loss + distill_weight x T^2 x KL(teachers'
    # mean softmax at temperature T || the model's softmax at T), T = distill_temperature.
    # The teachers score each training utterance once (as validation scores it, no masks)
    # before the first step. 0: off (and no teachers allowed).
    distill_weight: float = 0.0
    distill_temperature: float = 2.0
    # Speaker-adversarial training: a linear head learns to name each training clip's speaker
    # from the (detached) embedding, and the model learns, with this weight, to leave the head
    # guessing: the cross-entropy of the head's softmax against the uniform distribution over
    # the speakers (domain confusion, Tzeng et al. 2015). The weight ramps up from 0 as
    # 2 / (1 + e^(-10 p)) - 1 over training progress p (Ganin & Lempitsky 2015). Reversing the
    # head's gradient instead let the model fool the head while keeping more speaker
    # information (README). The reported training loss includes both terms. 0: off.
    speaker_adversarial: float = 0.0
    grad_clip: float | None = 5.0  # max global gradient norm; None: no clipping
    # Fine-tuning: start from these weights instead of a random initialisation: a checkpoint
    # training wrote (e.g. on another corpus) or a state-dict file (e.g. timm's ImageNet
    # HRNet of the preset's widths). Tensors are matched by name and shape; the classifier
    # stays fresh for other classes; input_norm is refitted (checkpoint.init_weights).
    init_from: str | None = None
    batch_size: int = 32  # clips per step (per process under torchrun)
    epochs: int = 30  # passes over the training set
    seed: int = 0  # weights, batch order, crops, masks and dropout derive from it
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: CUDA when usable, else CPU
    # "bf16": the model under bf16 autocast (features fp32), on CUDA or on the CPU (fast where
    # the CPU has bf16 matrix units, e.g. Intel AMX: BENCHMARKS.md); weights stay fp32.
    precision: Precision = "fp32"
    compile: bool = False  # torch.compile the model
    # With compile: "reduce-overhead" also captures the model's forward and backward as CUDA
    # graphs (torch.compile's mode; CPU runs compile as "default"). A training step on a GPU
    # is launch-bound (EmoHRNet-small, B=64: 29.7 ms of wall time around 16.4 ms of kernels on
    # an H200), and a graph replay launches the whole pass at once.
    compile_mode: CompileMode = "default"
    center_loss_weight: float = 0.01  # lambda_c, for models with uses_center_loss
    center_alpha: float = 0.5  # center update rate (Wen et al. 2016)
    reconstruction_weight: float = 0.1  # lambda_r: MSE of models that reconstruct the input

    def __post_init__(self) -> None:
        if isinstance(self.init_from, os.PathLike):  # stored as text: configs go to JSON
            object.__setattr__(self, "init_from", os.fspath(self.init_from))
        _validate_train(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (and validated); unknown field names are errors."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"TrainConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    @property
    def eval_clip_seconds(self) -> float | None:
        """The window validation and tests score, s (None: whole utterances)."""
        return None if self.eval_whole else self.clip_seconds

    def to_dict(self) -> dict:
        """JSON-ready dict (nested configs as dicts, tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def differences(self, saved: dict, ignore: tuple[str, ...] = ()) -> list[str]:
        """``"field: saved X, now Y"`` for each field (not in ``ignore``) where ``saved``, the
        :meth:`to_dict` of an earlier config, differs from this one. A field missing from
        ``saved`` was added to TrainConfig after it was written, and had its default then."""
        saved = {**TrainConfig().to_dict(), **saved}
        return [
            f"{key}: saved {saved[key]!r}, now {value!r}"
            for key, value in self.to_dict().items()
            if key not in ignore and saved[key] != value
        ]

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors (a config from another version)."""
        data = dict(data)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {sorted(unknown)}")
        if isinstance(data.get("frontend"), dict):
            data["frontend"] = FrontEndConfig(**data["frontend"])
        if isinstance(data.get("spec_augment"), dict):
            data["spec_augment"] = SpecAugmentConfig(**data["spec_augment"])
        if isinstance(data.get("model_overrides"), dict):
            from emohrnet_fast.models.registry import typed_fields

            model = data.get("model", cls.model)
            data["model_overrides"] = typed_fields(model, data["model_overrides"])
        return cls(**data)


def _validate_train(c: TrainConfig) -> None:
    def fail(field: str, expected: str) -> None:
        raise ValueError(f"TrainConfig.{field}={getattr(c, field)!r}: expected {expected}")

    from emohrnet_fast.models.registry import list_models

    if c.model not in list_models():
        fail("model", f"one of {', '.join(list_models())}")
    if not isinstance(c.model_overrides, dict):
        fail("model_overrides", "a dict of model config fields")
    if c.frontend is not None and not isinstance(c.frontend, FrontEndConfig):
        fail("frontend", "None or a FrontEndConfig")
    if c.spec_augment not in (None, "auto") and not isinstance(c.spec_augment, SpecAugmentConfig):
        fail("spec_augment", "'auto', None or a SpecAugmentConfig")
    if not (isinstance(c.clip_seconds, int | float) and 0 < c.clip_seconds <= 600):
        fail("clip_seconds", "a duration in (0, 600] seconds")
    if c.optimizer not in ("adam", "adamw"):
        fail("optimizer", "'adam' or 'adamw'")
    if c.schedule not in ("constant", "cosine"):
        fail("schedule", "'constant' or 'cosine'")
    if c.precision not in ("fp32", "bf16"):
        fail("precision", "'fp32' or 'bf16'")
    if c.compile_mode not in ("default", "reduce-overhead"):
        fail("compile_mode", "'default' or 'reduce-overhead'")
    if not (isinstance(c.lr, int | float) and c.lr > 0):
        fail("lr", "a learning rate > 0")
    for field in ("weight_decay", "label_smoothing", "center_loss_weight"):
        if not getattr(c, field) >= 0:
            fail(field, "a number >= 0")
    if not c.label_smoothing < 1:
        fail("label_smoothing", "a number in [0, 1)")
    if not (_is_number(c.mixup) and c.mixup >= 0):
        fail("mixup", "a Beta concentration >= 0 (0: off)")
    if not (_is_number(c.speed_perturb) and 0 <= c.speed_perturb <= 0.5):
        fail("speed_perturb", "a relative rate range r in [0, 0.5] (0: off)")
    if not (_is_number(c.ema_decay) and 0 <= c.ema_decay < 1):
        fail("ema_decay", "a decay in [0, 1) (0: off)")
    if not (_is_number(c.distill_weight) and 0 <= c.distill_weight <= 1):
        fail("distill_weight", "a weight in [0, 1] (0: off)")
    if not (_is_number(c.distill_temperature) and 0 < c.distill_temperature <= 100):
        fail("distill_temperature", "a temperature in (0, 100]")
    if not (_is_number(c.speaker_adversarial) and 0 <= c.speaker_adversarial <= 10):
        fail("speaker_adversarial", "a weight in [0, 10] (0: off)")
    for field in ("balance_classes", "speaker_norm", "eval_whole"):
        if not isinstance(getattr(c, field), bool):
            fail(field, "True or False")
    if not c.reconstruction_weight >= 0:
        fail("reconstruction_weight", "a number >= 0")
    if not 0 < c.center_alpha <= 1:
        fail("center_alpha", "a rate in (0, 1]")
    if c.grad_clip is not None and not c.grad_clip > 0:
        fail("grad_clip", "None or a norm > 0")
    for field, low in (("batch_size", 1), ("epochs", 1), ("warmup_steps", 0), ("seed", 0)):
        if not _is_int(getattr(c, field)) or getattr(c, field) < low:
            fail(field, f"an integer >= {low}")
    if c.seed >= 2**63:  # torch's generators take 64-bit seeds
        fail("seed", "an integer in [0, 2**63)")
    if c.device is not None and not isinstance(c.device, str):
        fail("device", "None or a device string such as 'cpu' or 'cuda'")
    if c.init_from is not None and not (isinstance(c.init_from, str) and c.init_from):
        fail("init_from", "None or the path of a checkpoint or state-dict file")
