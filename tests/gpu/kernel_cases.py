"""Drive the CUDA kernels over edge cases (for compute-sanitizer) or one big workload (ncu).

python3 -P tests/gpu/kernel_cases.py            # edge cases; CUDA vs CPU kernel; exit 1 on mismatch
python3 -P tests/gpu/kernel_cases.py --profile  # log_mel B=256 4 s (512, 160, 128); SpecAugment

KERNEL_CASES=quick (what sanitize.sh uses) keeps every configuration but drops the longest
and the middle lengths: under racecheck a 16001-sample clip through the generic FFT stage is
minutes of instrumented shared-memory reads, and the short lengths hold the edge frames.

The cases and tolerances are also what tests/test_cuda_emulation.py runs the CUDA code on, on
the CPU: a `Target` says how a case reaches the CUDA back-end (a device, or the emulation).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ef_testing import every_other_column, frame_relative_error

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import hr_fuse, log_mel, reference, spec_augment, spec_augment_
from emohrnet_fast.ops.spec_augment import MaskParams

CONFIGS = [
    FrontEndConfig(),
    FrontEndConfig(n_fft=400, n_mels=64, output="log", power=1.0),
    FrontEndConfig(n_mfcc=40),
    FrontEndConfig(n_mfcc=13, top_db=None),
    FrontEndConfig(n_fft=2042, hop_length=500, n_mels=64),  # prime half-length: generic stage
    FrontEndConfig(n_fft=8192, hop_length=2048, n_mels=None, output="power"),  # > 48 KiB smem
    FrontEndConfig(n_fft=2, hop_length=1, n_mels=None, output="power"),
    FrontEndConfig(n_fft=96, hop_length=7, n_mels=None, output="db"),
]
LENGTHS = [1, 2, 255, 257, 511, 16001]
if os.environ.get("KERNEL_CASES", "full") == "quick":
    LENGTHS = [1, 2, 257, 4001]
BATCHES = [1, 3]
MASK_SHAPES = [(1, 1, 1, 1), (3, 2, 40, 13), (5, 128, 401)]
FUSED_MASK_LENGTH = 16001
HR_FUSE_SIZES = [(32, 101), (16, 51), (8, 26), (4, 13)]  # EmoHRNet's branches at 128 x 401
# (output branch, branches, layout of the inputs: a key of HR_FUSE_LAYOUTS)
HR_FUSE_CASES = [
    (0, 4, "contiguous"),
    (1, 4, "channels_last"),
    (0, 2, "contiguous"),
    (3, 4, "contiguous"),
    (0, 3, "mixed"),
    (1, 3, "sliced"),
]


# Input i of a case -> its layout. "contiguous" and "channels_last" take the CUDA kernels'
# dense paths (also in the backward, whose incoming gradient gets the output's layout);
# "mixed" and "sliced" take the strided forward ("mixed" the strided backward too: its output
# is channels_last, its gradient contiguous).
HR_FUSE_LAYOUTS: dict[str, Callable[[int, Tensor], Tensor]] = {
    "contiguous": lambda i, x: x,
    "channels_last": lambda i, x: x.contiguous(memory_format=torch.channels_last),
    "mixed": lambda i, x: x.contiguous(memory_format=torch.channels_last) if i % 2 == 0 else x,
    "sliced": lambda i, x: every_other_column(x),
}


@dataclass(frozen=True)
class Target:
    """How a case reaches the CUDA back-end: `move` puts a tensor where the kernels run and
    `active()` is held while they run there."""

    move: Callable[[Tensor], Tensor]
    active: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


CUDA = Target(move=lambda t: t.cuda())


def log_mel_mismatch(
    got: Tensor, expected: Tensor, config: FrontEndConfig, oracle: Tensor | None = None
) -> str | None:
    """None if the CUDA back-end's features match the CPU kernel's, else what differs.

    ``oracle``, the float64 reference's features, settles dB / MFCC cases without the top_db
    clamp that two float32 FFTs cannot agree on: bins near an exact spectral zero (a 1- or
    2-sample clip, reflect-padded, is periodic) are float32 rounding noise 140 dB under the
    frame's peak, so the CPU kernel itself is 2.4 dB off float64 there (H200, 2026-12-04: CUDA
    was 0.07 dB off the CPU kernel). Such a case passes if the target is no further from the
    oracle than twice the CPU kernel is."""
    got = got.cpu()
    if config.output == "db" or config.n_mfcc is not None:
        err = float((got - expected).abs().max()) if got.numel() else 0.0
        ok = err <= 2e-3 * (2 * config.n_bands) ** 0.5
        if not ok and oracle is not None and not config.clamps_top_db:
            own = float((expected.double() - oracle).abs().max())
            err = float((got.double() - oracle).abs().max())
            return None if err <= 2 * own else f"error {err:.3g} vs float64 (CPU kernel {own:.3g})"
    else:
        to_power = torch.exp if config.output == "log" else (lambda t: t)
        err = frame_relative_error(to_power(got), to_power(expected))
        ok = err <= 1e-4
    return None if ok else f"error {err:.3g}"


def masks_to(masks: MaskParams, target: Target) -> MaskParams:
    return MaskParams(target.move(masks.freq), target.move(masks.time), target.move(masks.values))


def case_augment() -> SpecAugment:
    """Masks wide enough to reach both edges and cover whole axes of the small shapes."""
    return SpecAugment(freq_masks=3, freq_width=50, time_masks=3, time_width=0.5, mask_value=-500.0)


def hr_fuse_inputs(
    branch: int, n_branches: int, dtype: torch.dtype, batch: int = 3, channels: int = 16
) -> tuple[list[Tensor], int]:
    """(leaf inputs that require grad, how many of them are same-res) for one fuse case."""
    height, width = HR_FUSE_SIZES[branch]
    same = [torch.randn(batch, channels, height, width) for _ in range(branch + 1)]
    low = [torch.randn(batch, channels, *HR_FUSE_SIZES[k]) for k in range(branch + 1, n_branches)]
    return [t.to(dtype).requires_grad_() for t in same + low], len(same)


def hr_fuse_on(
    inputs: list[Tensor],
    n_same: int,
    grad: Tensor,
    target: Target | None,
    layout: str = "contiguous",
) -> list[Tensor]:
    """[output, grad of every input] of hr_fuse on the CPU kernel (target None) or a target,
    with the inputs in ``layout`` (HR_FUSE_LAYOUTS)."""
    if target is not None:
        inputs = [target.move(t.detach()) for t in inputs]
        grad = target.move(grad)
    inputs = [HR_FUSE_LAYOUTS[layout](i, t.detach()) for i, t in enumerate(inputs)]
    if layout == "channels_last":
        grad = grad.contiguous(memory_format=torch.channels_last)
    inputs = [t.detach().requires_grad_() for t in inputs]
    with target.active() if target is not None else contextlib.nullcontext():
        out = hr_fuse(inputs[:n_same], inputs[n_same:])
        grads = torch.autograd.grad(out, inputs, grad)
    return [t.detach().cpu() for t in (out, *grads)]


def hr_fuse_mismatch(got: list[Tensor], expected: list[Tensor], n_branches: int) -> str | None:
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(expected[0].dtype, 2e-2)
    errors = [
        float((g.double() - e.double()).abs().max()) for g, e in zip(got, expected, strict=True)
    ]
    # max() keeps a NaN only when it comes first: an unwritten gradient (the NaN-filled
    # buffers of the emulation) must fail wherever it is.
    if any(math.isnan(e) for e in errors):
        return "NaN in the output or a gradient"
    err = max(errors)
    return None if err <= tol * max(1.0, n_branches) else f"error {err:.3g}"


def check_edge_cases(target: Target = CUDA) -> int:
    failures = 0
    for config in CONFIGS:
        for length in LENGTHS:
            for batch in BATCHES:
                x = torch.randn(batch, length)
                with target.active():
                    got = log_mel(target.move(x), config)
                oracle = reference.log_mel(x, config, dtype=torch.float64)
                problem = log_mel_mismatch(got, log_mel(x, config), config, oracle)
                if problem:
                    failures += 1
                    print(f"MISMATCH {problem}: batch={batch} length={length} {config}")
    failures += check_masks(target)
    failures += check_hr_fuse(target)
    if target is CUDA:
        torch.cuda.synchronize()
    print(f"{failures} mismatches")
    return 1 if failures else 0


def check_masks(target: Target) -> int:
    """SpecAugment alone, in place, and fused into log_mel (with and without top_db/MFCC)."""
    failures = 0
    augment = case_augment()
    for shape in MASK_SHAPES:
        spec = torch.randn(shape)
        masks = augment.draw(shape[0], shape[-2], shape[-1])
        expected = spec_augment(spec, masks)
        with target.active():
            results = [
                spec_augment(target.move(spec), masks_to(masks, target)),
                spec_augment_(target.move(spec.clone()), masks_to(masks, target)),
            ]
        for got in results:
            if not torch.equal(got.cpu(), expected):
                failures += 1
                print(f"MISMATCH spec_augment {shape}")
    for config in CONFIGS[:4]:
        x = torch.randn(3, FUSED_MASK_LENGTH)
        masks = augment.draw(3, config.n_features, config.num_frames(FUSED_MASK_LENGTH))
        with target.active():
            got = log_mel(target.move(x), config, augment=masks_to(masks, target))
        problem = log_mel_mismatch(got, log_mel(x, config, augment=masks), config)
        if problem:
            failures += 1
            print(f"MISMATCH {problem}: fused masks {config}")
    return failures


def check_hr_fuse(target: Target) -> int:
    """hr_fuse forward and backward, CUDA vs CPU, on the odd EmoHRNet sizes and layouts."""
    failures = 0
    for dtype in (torch.float32, torch.bfloat16):
        for branch, n_branches, layout in HR_FUSE_CASES:
            inputs, n_same = hr_fuse_inputs(branch, n_branches, dtype)
            grad = torch.randn_like(inputs[0])
            expected = hr_fuse_on(inputs, n_same, grad, None)
            got = hr_fuse_on(inputs, n_same, grad, target, layout)
            problem = hr_fuse_mismatch(got, expected, n_branches)
            if problem:
                failures += 1
                print(f"MISMATCH {problem}: hr_fuse branch {branch}/{n_branches} {layout} {dtype}")
    return failures


def profile() -> int:
    """Three launches of each kernel at its benchmark's size, for ncu (--launch-skip 1)."""
    config = FrontEndConfig()
    x = torch.randn(256, 64000, device="cuda")
    spec = torch.randn(256, 1, 128, 401, device="cuda")
    augment = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=40)
    masks = augment.draw(256, 128, 401, device="cuda")
    for _ in range(3):
        log_mel(x, config)
        spec_augment(spec, masks)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true")
    sys.exit(profile() if parser.parse_args().profile else check_edge_cases())
