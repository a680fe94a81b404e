"""HRNet fuse vs the eager expression a user would write (F.interpolate + adds + ReLU), same
inputs, same process; on CUDA also torch.compile of that expression.

Shapes: the fuse layers of EmoHRNet-W18-small (stage widths 16, 32, 64, 128) at B=64 on a
128-Mel x 401-frame input (4-s clips): the stem leaves 32 x 101, and branch k has
H = 32 >> k, W = 101, 51, 26, 13 and 16 * 2^k channels. Lower branches arrive already projected
(1x1 conv + BN) to the output branch's channels, at their own resolution.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import CLIP_SECONDS
from ef_testing import HAS_CUDA

from emohrnet_fast.ops import hr_fuse, reference

BATCH = 64
WIDTHS = [101, 51, 26, 13]
CHANNELS = [16, 32, 64, 128]

# (name, output branch, number of branches in the stage)
FUSES = [
    ("branch0 of 2", 0, 2),
    ("branch0 of 3", 0, 3),
    ("branch0 of 4", 0, 4),
    ("branch1 of 4", 1, 4),
]
MODES = ["fwd", "fwd+bwd"]
# "bf16 NHWC": bf16 in channels_last, as the models train and infer on CUDA.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "bf16 NHWC": torch.bfloat16}
CUDA_MARKS = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]
CASES = [
    pytest.param(
        device,
        fuse,
        mode,
        dtype,
        id=f"{device}-{fuse[0]}-{mode}-{dtype}".replace(" ", "_"),
        marks=CUDA_MARKS if device == "cuda" else [],
    )
    for device in ("cpu", "cuda")
    for fuse in FUSES
    for mode in MODES
    for dtype in DTYPES
    if device == "cuda" or dtype == "fp32"  # bf16 is a GPU format; the CPU runs fp32
]


def _inputs(device: str, branch: int, branches: int, dtype_name: str):
    """same_res: the branch itself and every higher branch already strided down to it;
    low_res: every lower branch projected to this branch's channels, at its own size."""
    channels = CHANNELS[branch]
    layout = torch.channels_last if dtype_name.endswith("NHWC") else torch.contiguous_format

    def x(k):
        shape = (BATCH, channels, 32 >> k, WIDTHS[k])
        t = torch.randn(shape, device=device, dtype=DTYPES[dtype_name])
        return t.contiguous(memory_format=layout)

    same = [x(branch) for _ in range(branch + 1)]
    low = [x(k) for k in range(branch + 1, branches)]
    return same, low


def _floor_bytes(same, low, mode: str) -> int:
    """Forward: every input read once, the output written once. Backward: the gradient and
    the output read once, every gradient written once."""
    out = same[0].numel() * same[0].element_size()
    inputs = sum(t.numel() * t.element_size() for t in same + low)
    forward = inputs + out
    backward = 2 * out + out + sum(t.numel() * t.element_size() for t in low)
    return forward + (backward if mode == "fwd+bwd" else 0)


def _runner(fn, same, low, mode: str):
    if mode == "fwd":
        return lambda: fn(same, low)
    same = [t.requires_grad_() for t in same]
    low = [t.requires_grad_() for t in low]
    inputs = same + low
    grad = torch.randn_like(same[0])  # in same[0]'s layout, as the layers after it give

    def run():
        return torch.autograd.grad(fn(same, low), inputs, grad)

    return run


def _workload(fuse, mode, dtype_name):
    return f"{mode} {dtype_name} B={BATCH} {fuse[0]}"


@pytest.mark.parametrize("device,fuse,mode,dtype_name", CASES)
def test_ours(timer, device, fuse, mode, dtype_name):
    same, low = _inputs(device, fuse[1], fuse[2], dtype_name)
    timer(
        _runner(hr_fuse, same, low, mode),
        workload=_workload(fuse, mode, dtype_name),
        impl="emohrnet_fast.ops.hr_fuse",
        audio_seconds=BATCH * CLIP_SECONDS,
        floor_bytes=_floor_bytes(same, low, mode),
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device,fuse,mode,dtype_name", CASES)
def test_eager_reference(timer, device, fuse, mode, dtype_name):
    same, low = _inputs(device, fuse[1], fuse[2], dtype_name)
    timer(
        _runner(partial(reference.hr_fuse, check=False), same, low, mode),
        workload=_workload(fuse, mode, dtype_name),
        impl="interpolate + add + relu (eager)",
        audio_seconds=BATCH * CLIP_SECONDS,
        baseline=True,
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device,fuse,mode,dtype_name", [c for c in CASES if c.values[0] == "cuda"])
def test_compiled_reference(timer, device, fuse, mode, dtype_name):
    same, low = _inputs(device, fuse[1], fuse[2], dtype_name)
    compiled = torch.compile(partial(reference.hr_fuse, check=False))
    run = _runner(compiled, same, low, mode)
    run()
    timer(
        run,
        workload=_workload(fuse, mode, dtype_name),
        impl="torch.compile(reference)",
        audio_seconds=BATCH * CLIP_SECONDS,
        repeat=50,
        rounds=30,
    )
