"""HRNet fuse kernel vs the eager reference (CPU here, CUDA where present), its nearest rule
vs F.interpolate, autograd, layouts, reduced precision, torch.library checks and bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ef_testing import DEVICES, every_other_column

from emohrnet_fast.ops import hr_fuse, reference
from emohrnet_fast.ops.hr_fuse import (
    _accepted,
    _hr_fuse_backward_op,
    _hr_fuse_op,
    nearest_source_index,
)

# (H, W) of the output and the (h, w) of up to three low-res inputs. "w18" is EmoHRNet's
# branch 0 for a 128-Mel x 401-frame input (time 101 -> 51 -> 26 -> 13: not multiples).
GEOMETRIES = {
    "w18": ((32, 101), [(16, 51), (8, 26), (4, 13)]),
    "w401": ((8, 401), [(4, 201), (2, 101), (1, 51)]),
    "1x1-and-h==H": ((5, 7), [(1, 1), (5, 7), (5, 3)]),
}

NEAREST_PAIRS = [
    (101, 401), (201, 401), (51, 401), (26, 401), (13, 401), (401, 401), (13, 51), (26, 51),
    (51, 101), (16, 32), (4, 32), (1, 32), (3, 7), (7, 8), (100, 401), (1000, 1001), (1, 1),
    (3, 1000), (999, 1000), (4097, 10000), (26, 44), (14, 46),
]  # fmt: skip


def make_inputs(batch, channels, geometry, num_same, num_low, dtype=torch.float32, device="cpu"):
    (height, width), low_sizes = GEOMETRIES[geometry]
    same = [torch.randn(batch, channels, height, width, dtype=dtype) for _ in range(num_same)]
    low = [torch.randn(batch, channels, h, w, dtype=dtype) for h, w in low_sizes[:num_low]]
    return [x.to(device) for x in same], [x.to(device) for x in low]


def fwd_bwd(fn, same, low, grad):
    """fn(same, low) and its gradients for every input (grad: dL/d(out))."""
    same = [x.detach().requires_grad_() for x in same]
    low = [x.detach().requires_grad_() for x in low]
    out = fn(same, low)
    grads = torch.autograd.grad(out, same + low, grad)
    return out, list(grads)


def _max_abs(x):
    return x.abs().max().item() if x.numel() else 0.0


def assert_as_accurate_as_reference(name, ours, theirs, truth, floor=0.0):
    """Against the float64 ``truth`` (where finite), ``ours`` errs at most twice as much as the
    eager ``theirs``, plus ``floor``."""
    finite = truth.isfinite()
    err = _max_abs((ours.double() - truth)[finite])
    ref_err = _max_abs((theirs.double() - truth)[finite])
    assert err <= 2 * ref_err + floor, f"{name}: error {err:.3g} > 2 x reference's {ref_err:.3g}"


def check_against_reference(same, low):
    grad = torch.randn(same[0].shape, dtype=same[0].dtype, device=same[0].device)
    out, grads = fwd_bwd(hr_fuse, same, low, grad)
    expected, expected_grads = fwd_bwd(reference.hr_fuse, same, low, grad)
    # Same order of summation as the eager expression: float32 is bit-identical.
    torch.testing.assert_close(out, expected, atol=0, rtol=0, equal_nan=True)
    # The backward sums each low-res pixel's block in another order than the eager backward:
    # it must be as accurate, against float64, as the eager result (plus an ulp-sized floor,
    # for blocks where the eager order happens to round exactly).
    _, exact_grads = fwd_bwd(
        reference.hr_fuse, [x.double() for x in same], [x.double() for x in low], grad.double()
    )
    for i, (got, want, exact) in enumerate(zip(grads, expected_grads, exact_grads, strict=True)):
        assert torch.equal(got.isnan(), want.isnan()), f"grad {i}: NaN positions differ"
        finite = exact.isfinite()
        torch.testing.assert_close(got[~finite], want[~finite], atol=0, rtol=0, equal_nan=True)
        floor = 1e-6 * (1 + _max_abs(exact[finite]))
        assert_as_accurate_as_reference(f"grad {i}", got, want, exact, floor)
    return out, grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pair", NEAREST_PAIRS, ids=lambda p: f"{p[0]}to{p[1]}")
def test_nearest_rule_matches_interpolate(device, pair):
    """The kernels' index rule and the backward's block tables against F.interpolate itself,
    along each axis: a positive ramp, upsampled, shows which source every output reads."""
    in_size, out_size = pair
    ramp = torch.arange(1, in_size + 1, dtype=torch.float32, device=device)
    expected = F.interpolate(ramp.view(1, 1, 1, -1), size=(1, out_size), mode="nearest")
    assert torch.equal(nearest_source_index(in_size, out_size) + 1, expected.flatten().long().cpu())
    zeros_w = torch.zeros(1, 1, 1, out_size, device=device)
    assert torch.equal(hr_fuse([zeros_w], [ramp.view(1, 1, 1, -1)]), expected)
    zeros_h = torch.zeros(1, 1, out_size, 1, device=device)
    got = hr_fuse([zeros_h], [ramp.view(1, 1, -1, 1)])
    assert torch.equal(got.flatten(), expected.flatten())


@pytest.mark.parametrize("device", DEVICES)
def test_nearest_rule_exhaustive_small_sizes(device):
    for out_size in range(1, 70):
        for in_size in range(1, out_size + 1):
            ramp = torch.arange(in_size, dtype=torch.float32, device=device).view(1, 1, 1, -1)
            expected = F.interpolate(ramp, size=(1, out_size), mode="nearest")
            got = hr_fuse([torch.zeros(1, 1, 1, out_size, device=device)], [ramp])
            assert torch.equal(got, expected), (in_size, out_size)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("num_low", [0, 1, 2, 3])
@pytest.mark.parametrize("num_same", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [1, 3])
def test_matches_reference(device, geometry, num_low, num_same, batch):
    same, low = make_inputs(batch, 5, geometry, num_same, num_low, device=device)
    out, grads = check_against_reference(same, low)
    assert out.shape == same[0].shape and out.dtype == torch.float32
    assert [g.shape for g in grads] == [x.shape for x in same + low]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("geometry", ["w18", "w401"])
def test_reduced_precision_error_at_most_twice_the_reference(device, dtype, geometry):
    same, low = make_inputs(2, 6, geometry, 4, 3, dtype=dtype, device=device)
    grad = torch.randn(same[0].shape, device=device).to(dtype)
    out, grads = fwd_bwd(hr_fuse, same, low, grad)
    ref, ref_grads = fwd_bwd(reference.hr_fuse, same, low, grad)
    exact, exact_grads = fwd_bwd(
        reference.hr_fuse, [x.double() for x in same], [x.double() for x in low], grad.double()
    )
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    names = ["out"] + [f"grad{i}" for i in range(len(grads))]
    cases = zip(names, [out, *grads], [ref, *ref_grads], [exact, *exact_grads], strict=True)
    for name, ours, theirs, truth in cases:
        assert_as_accurate_as_reference(name, ours, theirs, truth)


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


def _expanded_batch(x):
    """Stride 0 over the batch: every example is the first one."""
    return x[:1].expand_as(x)


LAYOUTS = {
    "channels_last": lambda i, x: _channels_last(x),
    "mixed": lambda i, x: _channels_last(x) if i % 2 == 0 else x,
    "mixed-other-first": lambda i, x: _channels_last(x) if i % 2 else x,
    "sliced": lambda i, x: every_other_column(x),
    "transposed-hw": lambda i, x: x.transpose(2, 3).contiguous().transpose(2, 3),
    "expanded": lambda i, x: _expanded_batch(x),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_and_strides(device, layout):
    same, low = make_inputs(3, 4, "w18", 2, 3, device=device)
    inputs = [LAYOUTS[layout](i, x) for i, x in enumerate(same + low)]
    same, low = inputs[:2], inputs[2:]
    out, grads = check_against_reference(same, low)
    # The output copies same_res[0]'s strides when those are dense (torch.preserve_format),
    # else it is contiguous.
    dense = layout not in ("sliced", "expanded")
    assert out.stride() == (same[0].stride() if dense else torch.empty(out.shape).stride())
    for x, g in zip(low, grads[2:], strict=True):
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        assert g.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_pass_through(device):
    same, low = make_inputs(2, 3, "w18", 2, 2, device=device)
    same[1][1, 2, 5, 7] = float("nan")
    low[0][0, 1, 3, 4] = float("nan")  # a whole 2x2 block of the output
    low[1][1, 0, 2, 2] = float("inf")
    out, _ = check_against_reference(same, low)
    assert out.isnan().sum().item() == 1 + 4
    assert out[1, 2, 5, 7].isnan() and out[0, 1, 6:8, 8:10].isnan().all()


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    same, low = make_inputs(0, 3, "w18", 1, 2, device=device)
    out, grads = fwd_bwd(hr_fuse, same, low, torch.zeros(0, 3, 32, 101, device=device))
    assert out.shape == (0, 3, 32, 101) and [g.shape for g in grads] == [(0, 3, 32, 101)] + [
        x.shape for x in low
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("num_low", [0, 2])
def test_opcheck(device, layout, num_low):
    same, low = make_inputs(2, 3, "1x1-and-h==H", 2, num_low, device=device)
    if layout == "channels_last":
        same, low = [_channels_last(x) for x in same], [_channels_last(x) for x in low]
    same = [x.requires_grad_() for x in same]
    low = [x.requires_grad_() for x in low]
    torch.library.opcheck(_hr_fuse_op, (same, low))
    out = _hr_fuse_op(same, low).detach()
    hw = [size for x in low for size in x.shape[-2:]]
    flags = [layout == "channels_last"] * num_low
    torch.library.opcheck(_hr_fuse_backward_op, (torch.randn_like(out), out, hw, flags))


def test_gradcheck_float64():
    same, low = make_inputs(2, 2, "1x1-and-h==H", 2, 3, dtype=torch.float64)
    low[2] = torch.randn(2, 2, 2, 4, dtype=torch.float64)  # neither size a multiple
    inputs = [x.requires_grad_() for x in same + low]
    assert torch.autograd.gradcheck(lambda *xs: hr_fuse(xs[:2], xs[2:]), inputs)
    # Second derivatives (create_graph=True): the backward is then built from torch ops.
    assert torch.autograd.gradgradcheck(lambda *xs: hr_fuse(xs[:2], xs[2:]), inputs)


def test_second_derivative_matches_the_reference():
    """A gradient penalty through the fuse: d/dw of |d loss / dx|^2, kernel and reference
    (the kernel's own backward would be a constant there and lose half the value)."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(2, 3, 9, 11, generator=generator, requires_grad=True)
    x = torch.randn(2, 3, 9, 11, generator=generator, requires_grad=True)
    low = torch.randn(2, 3, 4, 5, generator=generator, requires_grad=True)
    results = []
    for fuse in (hr_fuse, reference.hr_fuse):
        y = fuse([x * w], [low * 2])
        grad_x, grad_low = torch.autograd.grad(y.square().sum(), (x, low), create_graph=True)
        results.append(torch.autograd.grad((grad_x.square().sum() + grad_low.sum()), (w, low)))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_float64_keeps_the_rule_of_the_other_dtypes():
    """One nearest rule for every dtype and device: PyTorch's own CPU float64 upsampling
    rounds differently at some sizes (45 -> 129: output row 43 reads row 15 there, 14 in
    float32 and on CUDA), and the kernels do not follow it there."""
    ramp = torch.arange(45, dtype=torch.float64).view(1, 1, 45, 1)
    got = hr_fuse([torch.zeros(1, 1, 129, 1, dtype=torch.float64)], [ramp])
    float32 = F.interpolate(ramp.float(), size=(129, 1), mode="nearest").double()
    assert torch.equal(got, float32)
    assert torch.equal(got.flatten().long(), nearest_source_index(45, 129))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    def fuse(x0, x1, x2):
        return hr_fuse([x0 * 2.0], [x1, x2]).sum(dim=1)

    compiled = torch.compile(fuse, fullgraph=True)
    for width in (101, 51):  # a new size re-traces
        same, low = make_inputs(2, 3, "w18", 1, 2)
        same[0] = same[0][..., :width].contiguous()
        inputs = [x.requires_grad_() for x in same + low]
        got = compiled(*inputs)
        expected = fuse(*inputs)
        torch.testing.assert_close(got, expected)
        grad = torch.randn_like(got)
        torch.testing.assert_close(
            torch.autograd.grad(got, inputs, grad), torch.autograd.grad(expected, inputs, grad)
        )


def _t(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(*shape, dtype=dtype, device=device)


BAD_INPUTS = [
    ("no-same-res", lambda: ([], []), ValueError, r"same_res: expected 1 to 4 tensors, got 0"),
    (
        "five-same-res",
        lambda: ([_t(1, 2, 4, 4)] * 5, []),
        ValueError,
        r"same_res: expected 1 to 4 tensors, got 5",
    ),
    (
        "four-low-res",
        lambda: ([_t(1, 2, 4, 4)], [_t(1, 2, 2, 2)] * 4),
        ValueError,
        r"low_res: expected 0 to 3 tensors, got 4",
    ),
    (
        "tensor-not-list",
        lambda: (_t(1, 2, 4, 4), []),
        TypeError,
        r"same_res: expected a list or tuple of tensors, got Tensor",
    ),
    (
        "not-a-tensor",
        lambda: ([_t(1, 2, 4, 4)], [1.0]),
        TypeError,
        r"low_res\[0\]: expected a torch.Tensor, got float",
    ),
    (
        "3-d",
        lambda: ([_t(1, 2, 4, 4)], [_t(1, 2, 2, 2), _t(2, 2, 2)]),
        ValueError,
        r"low_res\[1\]: expected a 4-D tensor \(B, C, H, W\), got shape \(2, 2, 2\)",
    ),
    (
        "integer",
        lambda: ([_t(1, 2, 4, 4, dtype=torch.int64)], []),
        TypeError,
        r"same_res\[0\]: expected float32, float16, bfloat16 or float64, got torch.int64",
    ),
    (
        "complex",
        lambda: ([_t(1, 2, 4, 4), _t(1, 2, 4, 4, dtype=torch.complex64)], []),
        TypeError,
        r"same_res\[1\]: expected float32, float16, bfloat16 or float64, got torch.complex64",
    ),
    (
        "dtype-mismatch",
        lambda: ([_t(1, 2, 4, 4)], [_t(1, 2, 2, 2, dtype=torch.float16)]),
        TypeError,
        r"low_res\[0\]: expected dtype torch.float32 like same_res\[0\], got torch.float16",
    ),
    (
        "channel-mismatch",
        lambda: ([_t(4, 16, 8, 8)], [_t(4, 16, 4, 4), _t(4, 8, 2, 2)]),
        ValueError,
        r"low_res\[1\]: expected \(B, C\) = \(4, 16\) like same_res\[0\], got \(4, 8\)",
    ),
    (
        "batch-mismatch",
        lambda: ([_t(4, 16, 8, 8), _t(3, 16, 8, 8)], []),
        ValueError,
        r"same_res\[1\]: expected \(B, C\) = \(4, 16\) like same_res\[0\], got \(3, 16\)",
    ),
    (
        "same-res-size-mismatch",
        lambda: ([_t(1, 2, 8, 13), _t(1, 2, 8, 12)], []),
        ValueError,
        r"same_res\[1\]: expected \(H, W\) = \(8, 13\) like same_res\[0\], got \(8, 12\)",
    ),
    (
        "low-res-larger",
        lambda: ([_t(1, 2, 8, 13)], [_t(1, 2, 4, 14)]),
        ValueError,
        r"low_res\[0\]: expected 1 <= \(h, w\) <= \(H, W\) = \(8, 13\) of same_res\[0\] "
        r"\(hr_fuse only upsamples\), got \(4, 14\)",
    ),
    (
        "low-res-empty",
        lambda: ([_t(1, 2, 8, 13)], [_t(1, 2, 0, 3)]),
        ValueError,
        r"low_res\[0\]: expected 1 <= \(h, w\) <= \(H, W\) = \(8, 13\)",
    ),
    (
        "empty-output",
        lambda: ([_t(1, 2, 0, 13)], []),
        ValueError,
        r"same_res\[0\]: expected H, W >= 1, got shape \(1, 2, 0, 13\)",
    ),
    (
        "device-mismatch",
        lambda: ([_t(1, 2, 4, 4)], [_t(1, 2, 2, 2, device="meta")]),
        ValueError,
        r"low_res\[0\] is on meta but same_res\[0\] is on cpu",
    ),
    (
        "unsupported-device",
        lambda: ([_t(1, 2, 4, 4, device="meta")], []),
        ValueError,
        r"same_res\[0\]: device meta is not supported \(cpu or cuda\)",
    ),
]


@pytest.mark.parametrize(
    "make_args,error,pattern",
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_is_rejected(make_args, error, pattern):
    same, low = make_args()
    # The message-free fast check must refuse it too (else no message at all).
    assert not _accepted(same, low)
    with pytest.raises(error, match=pattern):
        hr_fuse(same, low)
