"""Per-call overhead: each op on inputs so small that its kernel costs next to nothing, beside
the eager PyTorch expression (the package's reference, without its argument checks) on the
same inputs. What is left is
Python and dispatch: argument checks, the launch, the autograd node.

On a GPU, an op whose kernel runs shorter than its Python overhead is limited by that
overhead, not by the kernel. EmoHRNet's fuses at B=64 are in that range, and so is the
front-end at B=1.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
from ef_testing import DEVICES

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import hr_fuse, log_mel, reference, spec_augment

IMPLS = ["ours", "eager"]


def _time(timer, fn, workload: str, impl: str) -> None:
    for _ in range(10):
        fn()
    label = "emohrnet_fast.ops" if impl == "ours" else "eager PyTorch (ops.reference)"
    timer(fn, workload=workload, impl=label, clips=1, baseline=impl == "eager", repeat=100)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
def test_log_mel_call(timer, device, impl):
    x = torch.randn(1, 64, device=device)
    config = FrontEndConfig()
    op = log_mel if impl == "ours" else partial(reference.log_mel, check=False)
    _time(timer, lambda: op(x, config), "overhead: log_mel of 64 samples (per call)", impl)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
def test_spec_augment_call(timer, device, impl):
    spec = torch.randn(2, 1, 8, 8, device=device)
    masks = SpecAugment(freq_width=2, time_width=2).draw(2, 8, 8, device=device)
    op = spec_augment if impl == "ours" else partial(reference.spec_augment, check=False)
    _time(timer, lambda: op(spec, masks), "overhead: spec_augment (2, 1, 8, 8) (per call)", impl)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["no grad", "fwd+bwd"])
def test_hr_fuse_call(timer, device, impl, mode):
    def x(size: int) -> torch.Tensor:
        return torch.randn(2, 4, size, size, device=device, requires_grad=mode == "fwd+bwd")

    same, low = [x(8), x(8)], [x(4)]
    grad = torch.randn(2, 4, 8, 8, device=device)
    # the eager side as a user writes it: no argument checks
    op = hr_fuse if impl == "ours" else partial(reference.hr_fuse, check=False)
    if mode == "fwd+bwd":

        def run():
            op(same, low).backward(grad)
    else:

        def run():
            op(same, low)

    _time(timer, run, f"overhead: hr_fuse 2 same + 1 low, {mode} (per call)", impl)
