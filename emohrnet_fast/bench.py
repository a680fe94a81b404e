"""``emohrnet-fast bench``: our kernels and model beside the code a user would run instead, on
this machine, in one process, without pytest.

A quick check of what the library buys on your hardware; the full suite with every workload,
the memory floors and the tables of BENCHMARKS.md is ``pytest benchmarks`` in a source
checkout. Each row times one call of our op and of its baseline on the same inputs: two
warm-up calls each, then ``repeat`` rounds that time one call of each side in turn (CUDA work
synchronised before each clock stops), and the median of each side's times; alternating the
two spreads the machine's drift over both.

* log-Mel front-end: torchaudio ``MelSpectrogram`` + ``AmplitudeToDB`` where torchaudio is
  installed, else ``torch.stft`` + filterbank matmul + dB (our eager reference);
* SpecAugment masking: the eager reference (``torch.where`` over a dense mask);
* HRNet fuse (EmoHRNet-small's widest, 4 branches): ``F.interpolate`` + sum + ReLU, forward,
  and forward + backward;
* EmoHRNet-small inference (features -> logits): the kernel fuse against the eager one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from emohrnet_fast._info import device_name
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops import hr_fuse, log_mel, reference, spec_augment


@dataclass(frozen=True)
class BenchRow:
    """One workload: our op and its baseline, milliseconds per call."""

    op: str
    workload: str
    ours_ms: float
    baseline: str
    baseline_ms: float

    @property
    def speedup(self) -> float:
        """Baseline time / our time (> 1: ours is faster)."""
        return self.baseline_ms / self.ours_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup}


def torchaudio_frontend(config: FrontEndConfig, device: str | torch.device):
    """torchaudio's equivalent of the front-end ``config``: ``MFCC`` when it has ``n_mfcc``,
    else ``MelSpectrogram`` (``Spectrogram`` without Mel bands) then ``AmplitudeToDB`` for dB
    output; ``(callable, name)``, or ``None`` where torchaudio is not installed. The callable
    takes ``(..., time)``; like torchaudio it clamps ``top_db`` over each ``(channels,
    features, frames)`` block, so a ``(B, time)`` batch is clamped as one and ``(B, 1,
    time)`` per example (ours: always per example)."""
    try:
        import torchaudio
    except ImportError:
        return None
    if config.output == "log":
        raise ValueError("torchaudio has no log(x + eps) front-end")
    transforms = torchaudio.transforms
    mel_kwargs = dict(
        n_fft=config.n_fft,
        win_length=config.win_length,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        f_min=config.f_min,
        f_max=config.f_max,
        power=config.power,
        mel_scale=config.mel_scale,
        norm=config.norm,
    )
    stype = "power" if config.power == 2.0 else "magnitude"
    to_db = transforms.AmplitudeToDB(stype, top_db=config.top_db)
    if config.n_mfcc:
        mfcc = transforms.MFCC(config.sample_rate, n_mfcc=config.n_mfcc, melkwargs=mel_kwargs)
        mfcc.amplitude_to_DB = to_db  # MFCC's own is AmplitudeToDB("power", 80)
        return mfcc.to(device), "torchaudio MFCC"
    if config.n_mels is None:
        bands = transforms.Spectrogram(
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            power=config.power,
        )
        name = "torchaudio Spectrogram"
    else:
        bands = transforms.MelSpectrogram(config.sample_rate, **mel_kwargs)
        name = "torchaudio MelSpectrogram"
    bands = bands.to(device)
    if config.output == "power":
        return bands, name
    to_db = to_db.to(device)
    return (lambda wave: to_db(bands(wave))), f"{name} + AmplitudeToDB"


def time_pair(
    ours: Callable[[], object],
    baseline: Callable[[], object],
    device: torch.device,
    repeat: int,
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and of ``baseline``: two warm-up calls each, then
    ``repeat`` rounds timing one call of each in turn."""
    for _ in range(2):
        ours()
        baseline()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((ours, times[0]), (baseline, times[1])):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def run(
    device: str | torch.device = "cpu",
    *,
    batch: int = 64,
    clip_seconds: float = 4.0,
    repeat: int = 10,
    model: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Time every workload of the module docstring on ``device``.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        batch: clips per call (EmoHRNet's model row uses a quarter of it, at least 1).
        clip_seconds: clip length, seconds of 16 kHz audio (the fuse and model rows use the
            feature size of that length).
        repeat: timed rounds (one call of each side per round), after two warm-up calls.
        model: include the EmoHRNet-small row (the slowest on a CPU).
        progress: called with each workload's name before it runs.

    Returns:
        One :class:`BenchRow` per workload.
    """
    for name, value in (("batch", batch), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected an integer >= 1")
    if not (isinstance(clip_seconds, int | float) and 0.5 <= clip_seconds <= 60):
        raise ValueError(f"clip_seconds={clip_seconds!r}: expected seconds in [0.5, 60]")
    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(0)
    config = FrontEndConfig()
    n_mels = config.n_features  # the preset's 128 Mel bands
    samples = round(clip_seconds * config.sample_rate)
    frames = config.num_frames(samples)
    rows: list[BenchRow] = []

    def measure(op, workload, ours, baseline_name, baseline) -> None:
        if progress is not None:
            progress(f"{op}: {workload}")
        ours_s, baseline_s = time_pair(ours, baseline, device, repeat)
        rows.append(BenchRow(op, workload, ours_s * 1e3, baseline_name, baseline_s * 1e3))

    with torch.inference_mode():
        audio = torch.randn(batch, samples, device=device, generator=generator)
        torchaudio = torchaudio_frontend(config, device)
        if torchaudio is not None:
            # (B, 1, time): torchaudio then clamps top_db per clip, as ours does.
            baseline, name = torchaudio
            baseline_call = lambda: baseline(audio[:, None])  # noqa: E731
        else:
            name = "torch.stft + matmul + dB (eager)"
            baseline_call = lambda: reference.log_mel(audio, config, check=False)  # noqa: E731
        workload = f"B={batch}, {clip_seconds:g} s at 16 kHz, 128 Mel bands"
        measure("log-Mel", workload, lambda: log_mel(audio, config), name, baseline_call)

        features = log_mel(audio, config)
        masks = SpecAugment().draw(batch, n_mels, frames, device, generator=generator)
        measure(
            "SpecAugment",
            f"B={batch}, 128 x {frames}, 2 + 2 masks",
            lambda: spec_augment(features, masks),
            "torch.where (eager)",
            lambda: reference.spec_augment(features, masks, check=False),
        )

    # EmoHRNet-small's first branch in stage 4: 16 channels at a quarter of the features'
    # size, the three lower branches at 1/8, 1/16 and 1/32.
    height, width = n_mels // 4, (frames - 1) // 4 + 1
    sizes = [(height, width)]
    for _ in range(3):
        sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))
    branches = [
        torch.randn(batch, 16, h, w, device=device, generator=generator, requires_grad=True)
        for h, w in sizes
    ]
    same, low = branches[:1], branches[1:]
    workload = f"B={batch}, 16 x {height} x {width}, 3 lower branches"
    with torch.no_grad():
        measure(
            "HRNet fuse, forward",
            workload,
            lambda: hr_fuse(same, low),
            "F.interpolate + sum + ReLU (eager)",
            lambda: reference.hr_fuse(same, low, check=False),
        )
    grad = torch.randn(batch, 16, height, width, device=device, generator=generator)
    measure(
        "HRNet fuse, forward + backward",
        workload,
        lambda: torch.autograd.backward(hr_fuse(same, low), grad),
        "F.interpolate + sum + ReLU (eager)",
        lambda: torch.autograd.backward(reference.hr_fuse(same, low, check=False), grad),
    )

    if model:
        from emohrnet_fast.models import create

        clips = max(1, batch // 4)
        kernel = create("emohrnet_small", 7).to(device).eval()
        eager = create("emohrnet_small", 7, fuse="reference").to(device).eval()
        eager.load_state_dict(kernel.state_dict())
        inputs = torch.randn(clips, 1, n_mels, frames, device=device, generator=generator)
        with torch.inference_mode():
            measure(
                "EmoHRNet-small inference",
                f"B={clips}, 128 x {frames} features",
                lambda: kernel(inputs),
                "the same model, eager fuse",
                lambda: eager(inputs),
            )
    return rows


def markdown(rows: list[BenchRow], device: torch.device | str) -> str:
    """The rows as a markdown table headed by the device's name."""
    device = torch.device(device)
    lines = [
        f"Device: {device_name(device)} (torch {torch.__version__})",
        "",
        "| op | workload | ours ms | baseline | baseline ms | speed-up |",
        "|---|---|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.op} | {r.workload} | {r.ours_ms:.3f} | {r.baseline} | "
            f"{r.baseline_ms:.3f} | {r.speedup:.2f}x |"
        )
    return "\n".join(lines) + "\n"
