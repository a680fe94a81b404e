"""The HRNet multi-resolution fuse as a PyTorch custom op over the compiled core."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor
from torch.fx.experimental.symbolic_shapes import statically_known_true

from emohrnet_fast._extension import _C
from emohrnet_fast.ops._checks import (
    KERNELS_HAVE_CUDA,
    check_device_supported,
    check_tensor_list,
)
from emohrnet_fast.ops._launch import cuda_stream_context

MAX_SAME_RES = 4
MAX_LOW_RES = 3
_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}


def nearest_source_index(
    in_size: int, out_size: int, device: torch.device | str | None = None
) -> Tensor:
    """Source index of every output index under ``F.interpolate(size=..., mode="nearest")``.

    PyTorch's legacy rule (ATen ``nearest_idx``): identity for equal sizes, ``dst >> 1`` for an
    exact doubling, else ``min(floor(dst * scale), in_size - 1)`` with ``scale = in_size /
    out_size`` rounded to float32 once. The kernels apply the same rule
    (``csrc/hr_fuse/hr_fuse.h``, ``NearestMap``). Returns ``(out_size,)`` int64 on ``device``
    (default: the CPU), computed there: no host-to-device copy, which CUDA graph capture
    forbids.
    """
    dst = torch.arange(out_size, device=device)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    scale = float(np.float32(in_size) / np.float32(out_size))  # a float32 value, exactly
    return torch.floor(dst.to(torch.float32) * scale).to(torch.int64).clamp_(max=in_size - 1)


def _block_starts(in_size: int, out_size: int, device: torch.device) -> Tensor:
    """``(in_size + 1,)`` int64: source index ``s`` feeds outputs ``[starts[s], starts[s+1])``.

    The nearest map is non-decreasing, so every source's block is one contiguous range (empty
    for a source no output reads). Cached, as the backward of a model runs the same few
    sizes, except while a CUDA graph is being captured: a tensor made then belongs to the
    graph's memory pool and is only written by its replays, so it must not outlive it in a
    cache that eager calls read.
    """
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return _compute_block_starts(in_size, out_size, device)
    return _cached_block_starts(in_size, out_size, device)


def _compute_block_starts(in_size: int, out_size: int, device: torch.device) -> Tensor:
    sources = torch.arange(in_size + 1, device=device)
    return torch.searchsorted(nearest_source_index(in_size, out_size, device), sources)


_cached_block_starts = functools.lru_cache(maxsize=64)(_compute_block_starts)


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _padded(values: list, length: int, fill) -> list:
    return values + [fill] * (length - len(values))


def _launch_forward(same_res: Sequence[Tensor], low_res: Sequence[Tensor]) -> Tensor:
    ref = same_res[0]
    out = torch.empty_like(ref)  # keeps same_res[0]'s memory format
    batch, channels, height, width = ref.shape
    guard, stream = cuda_stream_context(ref)
    with guard:
        _C.hr_fuse(
            same=_padded([x.data_ptr() for x in same_res], MAX_SAME_RES, 0),
            same_strides=_padded([list(x.stride()) for x in same_res], MAX_SAME_RES, [0] * 4),
            num_same=len(same_res),
            low=_padded([x.data_ptr() for x in low_res], MAX_LOW_RES, 0),
            low_strides=_padded([list(x.stride()) for x in low_res], MAX_LOW_RES, [0] * 4),
            low_sizes=_padded([list(x.shape[-2:]) for x in low_res], MAX_LOW_RES, [1, 1]),
            num_low=len(low_res),
            out=out.data_ptr(),
            out_strides=list(out.stride()),
            batch=batch,
            channels=channels,
            height=height,
            width=width,
            dtype=_DTYPE_CODES[ref.dtype],
            num_threads=torch.get_num_threads(),
            cuda=ref.is_cuda,
            stream=stream,
        )
    return out


@torch.library.custom_op("emohrnet_fast::hr_fuse", mutates_args=())
def _hr_fuse_op(same_res: list[Tensor], low_res: list[Tensor]) -> Tensor:
    return _launch_forward(same_res, low_res)


@_hr_fuse_op.register_fake
def _(same_res, low_res):
    return torch.empty_like(same_res[0])


def _low_res_grad_buffers(
    out: Tensor, low_res_hw: list[int], low_res_channels_last: list[bool]
) -> list[Tensor]:
    batch, channels = out.shape[:2]
    return [
        torch.empty(
            (batch, channels, h, w),
            dtype=out.dtype,
            device=out.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        )
        for h, w, channels_last in zip(
            low_res_hw[0::2], low_res_hw[1::2], low_res_channels_last, strict=True
        )
    ]


def _launch_backward(
    grad: Tensor, out: Tensor, low_res_hw: list[int], low_res_channels_last: list[bool]
) -> list[Tensor]:
    """``[grad of every same_res input, grad of low_res[0], ...]``; ``low_res_hw`` is the
    flattened ``(h, w)`` of each low-res input."""
    grad_same = torch.empty_like(out)
    grad_low = _low_res_grad_buffers(out, low_res_hw, low_res_channels_last)
    batch, channels, height, width = out.shape
    sizes = [list(g.shape[-2:]) for g in grad_low]
    row_start = [_block_starts(h, height, out.device) for h, _ in sizes]
    col_start = [_block_starts(w, width, out.device) for _, w in sizes]
    guard, stream = cuda_stream_context(out)
    with guard:
        _C.hr_fuse_backward(
            grad=grad.data_ptr(),
            grad_strides=list(grad.stride()),
            out=out.data_ptr(),
            out_strides=list(out.stride()),
            grad_same=grad_same.data_ptr(),
            grad_same_strides=list(grad_same.stride()),
            grad_low=_padded([g.data_ptr() for g in grad_low], MAX_LOW_RES, 0),
            grad_low_strides=_padded([list(g.stride()) for g in grad_low], MAX_LOW_RES, [0] * 4),
            low_sizes=_padded(sizes, MAX_LOW_RES, [1, 1]),
            row_start=_padded([t.data_ptr() for t in row_start], MAX_LOW_RES, 0),
            col_start=_padded([t.data_ptr() for t in col_start], MAX_LOW_RES, 0),
            num_low=len(grad_low),
            batch=batch,
            channels=channels,
            height=height,
            width=width,
            dtype=_DTYPE_CODES[out.dtype],
            num_threads=torch.get_num_threads(),
            cuda=out.is_cuda,
            stream=stream,
        )
    return [grad_same, *grad_low]


def _differentiable_backward(grad: Tensor, out: Tensor, low_res_hw: list[int]) -> list[Tensor]:
    """:func:`_launch_backward`'s gradients from differentiable torch ops, for a backward
    that autograd records (``create_graph=True``: gradient penalties, Hessian-vector
    products), where the kernel's result would be a constant and drop the terms through
    ``grad``. ReLU's mask counts as constant (its derivative is 0 almost everywhere)."""
    passed = grad * (out > 0)
    height, width = out.shape[-2:]
    grad_low = []
    for h, w in zip(low_res_hw[0::2], low_res_hw[1::2], strict=True):
        rows = nearest_source_index(h, height, out.device)
        cols = nearest_source_index(w, width, out.device)
        # Nearest upsampling's adjoint: each source sums the outputs that copied it.
        by_row = passed.new_zeros(*passed.shape[:2], h, width).index_add(2, rows, passed)
        grad_low.append(by_row.new_zeros(*passed.shape[:2], h, w).index_add(3, cols, by_row))
    return [passed, *grad_low]


@torch.library.custom_op("emohrnet_fast::hr_fuse_backward", mutates_args=())
def _hr_fuse_backward_op(
    grad: Tensor, out: Tensor, low_res_hw: list[int], low_res_channels_last: list[bool]
) -> list[Tensor]:
    return _launch_backward(grad, out, low_res_hw, low_res_channels_last)


@_hr_fuse_backward_op.register_fake
def _(grad, out, low_res_hw, low_res_channels_last):
    return [torch.empty_like(out), *_low_res_grad_buffers(out, low_res_hw, low_res_channels_last)]


def _save_for_backward(ctx, same_res: Sequence[Tensor], low_res: Sequence[Tensor], out: Tensor):
    ctx.save_for_backward(out)  # ReLU's mask is the sign of the output
    ctx.num_same = len(same_res)
    ctx.low_res_hw = [size for x in low_res for size in x.shape[-2:]]
    ctx.low_res_channels_last = [_is_channels_last(x) for x in low_res]


def _setup_context(ctx, inputs, output):
    _save_for_backward(ctx, *inputs, output)


def _backward_grads(ctx, grad: Tensor, launch) -> list[Tensor]:
    """Both autograd paths' backward: ``launch`` (the kernel, as a custom op or directly),
    or, when autograd records the backward (``create_graph=True``), torch ops it can
    differentiate again."""
    (out,) = ctx.saved_tensors
    if torch.is_grad_enabled():
        return _differentiable_backward(grad, out, ctx.low_res_hw)
    return launch(grad, out, ctx.low_res_hw, ctx.low_res_channels_last)


def _backward(ctx, grad):
    grad_same, *grad_low = _backward_grads(ctx, grad, _hr_fuse_backward_op)
    # Every same-res input enters the sum with weight 1: they share one gradient tensor.
    return [grad_same] * ctx.num_same, grad_low


_hr_fuse_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerHrFuse(torch.autograd.Function):
    """The same launches as the custom op, for eager calls. A custom op's Python dispatch
    costs about 50 us a call, its backward's as much again: EmoHRNet-small runs 9 fuses per
    forward pass, each moving well under a millisecond of data, so on a GPU that overhead, not
    the kernels, set the pace (H200, 2026-12-04: fwd+bwd 0.52 ms against eager's 0.17).
    Traced code (torch.compile, export) still sees the custom op."""

    @staticmethod
    def forward(ctx, num_same: int, *inputs: Tensor) -> Tensor:
        same_res, low_res = inputs[:num_same], inputs[num_same:]
        out = _launch_forward(same_res, low_res)
        _save_for_backward(ctx, same_res, low_res, out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_same, *grad_low = _backward_grads(ctx, grad, _launch_backward)
        return None, *([grad_same] * ctx.num_same), *grad_low


def _accepted(same_res: object, low_res: object) -> bool:
    """Whether :func:`check_inputs` (kernel=True) accepts these inputs, without building its
    messages: every eager call pays the check (about a third of a small fuse's Python time),
    and only a rejected call needs the names. Never True where check_inputs would raise."""
    if not (
        isinstance(same_res, list | tuple)
        and isinstance(low_res, list | tuple)
        and 1 <= len(same_res) <= MAX_SAME_RES
        and len(low_res) <= MAX_LOW_RES
    ):
        return False
    ref = same_res[0]
    if not isinstance(ref, Tensor) or ref.dim() != 4 or ref.dtype not in _DTYPE_CODES:
        return False
    device, dtype = ref.device, ref.dtype
    if not (device.type == "cpu" or (device.type == "cuda" and KERNELS_HAVE_CUDA)):
        return False
    batch, channels, height, width = ref.shape
    if height == 0 or width == 0:
        return False
    for x in same_res:
        if (
            not (isinstance(x, Tensor) and x.dtype == dtype and x.device == device)
            or x.shape != ref.shape
        ):
            return False
    for x in low_res:
        if not (isinstance(x, Tensor) and x.dtype == dtype and x.device == device):
            return False
        if x.dim() != 4:
            return False
        b, c, h, w = x.shape
        if b != batch or c != channels or not (1 <= h <= height and 1 <= w <= width):
            return False
    return True


def check_inputs(
    same_res: object, low_res: object, *, kernel: bool = True
) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs as lists, or an error naming the first bad one. ``kernel=False`` (for
    :func:`emohrnet_fast.ops.reference.hr_fuse`) accepts any device PyTorch runs on."""
    if kernel and _accepted(same_res, low_res):
        # _accepted checked them: sequences of tensors
        return list(cast(Sequence[Tensor], same_res)), list(cast(Sequence[Tensor], low_res))
    return _checked(same_res, low_res, kernel)


def _exceeds(size: int, limit: int) -> bool:
    """``size > limit`` where the shapes decide it. In traced code (torch.compile, export) a
    relation between symbolic sizes that they leave open counts as False, so it adds no
    guard: torch.export then keeps the frame axis dynamic (a low branch's ``(T - 1) // 32 +
    1 <= (T - 1) // 4 + 1`` holds for every T, but the solver cannot prove it). Nothing is
    lost: the kernels clamp every source index to its input, so no sizes read out of bounds."""
    return statically_known_true(size > limit)


def _checked(same_res: object, low_res: object, kernel: bool) -> tuple[list[Tensor], list[Tensor]]:
    same = check_tensor_list("same_res", same_res, 1, MAX_SAME_RES)
    low = check_tensor_list("low_res", low_res, 0, MAX_LOW_RES)
    named = [(f"same_res[{i}]", x) for i, x in enumerate(same)]
    named += [(f"low_res[{i}]", x) for i, x in enumerate(low)]
    for name, x in named:
        if x.dim() != 4:
            raise ValueError(
                f"{name}: expected a 4-D tensor (B, C, H, W), got shape {tuple(x.shape)}"
            )
        if x.dtype not in _DTYPE_CODES:
            raise TypeError(
                f"{name}: expected float32, float16, bfloat16 or float64, got {x.dtype}"
            )
    ref = same[0]
    if kernel:
        check_device_supported("same_res[0]", ref)
    batch, channels, height, width = ref.shape
    if _exceeds(1, height) or _exceeds(1, width):
        raise ValueError(f"same_res[0]: expected H, W >= 1, got shape {tuple(ref.shape)}")
    for name, x in named[1:]:
        if x.device != ref.device:
            raise ValueError(f"{name} is on {x.device} but same_res[0] is on {ref.device}")
        if x.dtype != ref.dtype:
            raise TypeError(f"{name}: expected dtype {ref.dtype} like same_res[0], got {x.dtype}")
        if tuple(x.shape[:2]) != (batch, channels):
            raise ValueError(
                f"{name}: expected (B, C) = ({batch}, {channels}) like same_res[0], "
                f"got {tuple(x.shape[:2])}"
            )
    for name, x in named[1 : len(same)]:
        if tuple(x.shape[2:]) != (height, width):
            raise ValueError(
                f"{name}: expected (H, W) = ({height}, {width}) like same_res[0], "
                f"got {tuple(x.shape[2:])}"
            )
    for name, x in named[len(same) :]:
        h, w = x.shape[2:]
        if _exceeds(1, h) or _exceeds(1, w) or _exceeds(h, height) or _exceeds(w, width):
            raise ValueError(
                f"{name}: expected 1 <= (h, w) <= (H, W) = ({height}, {width}) of same_res[0] "
                f"(hr_fuse only upsamples), got ({h}, {w})"
            )
    return same, low


def hr_fuse(same_res: Sequence[Tensor], low_res: Sequence[Tensor]) -> Tensor:
    """HRNet fuse for one output branch: ReLU of the sum of all branch contributions.

    ``relu(sum(same_res) + sum(F.interpolate(x, size=(H, W), mode="nearest") for x in
    low_res))`` in one pass that never materialises the upsampled tensors; the backward is one
    pass too. Nearest follows PyTorch's index rule exactly (``nearest_source_index``), so sizes
    that are not multiples of each other (e.g. 401 frames -> 101, 51, 26, 13) match
    ``F.interpolate``: on CUDA in every dtype, on the CPU in float32, float16 and bfloat16.
    PyTorch's CPU float64 path rounds its own way at some sizes of 129 and more (45 -> 129:
    output row 43 reads source row 15 there, 14 everywhere else); the kernels keep the one
    rule. NaN and Inf pass through as in the reference (``relu(NaN)`` is NaN).

    Args:
        same_res: 1 to 4 tensors ``(B, C, H, W)``: the identity contribution and those already
            brought to this branch's resolution (e.g. strided convs of higher branches).
        low_res: 0 to 3 tensors ``(B, C, h, w)`` with ``1 <= h <= H``, ``1 <= w <= W``: lower
            branches already projected to ``C`` channels (1x1 conv + BN), at their own size.
            All tensors share one dtype (float32, bfloat16, float16, or float64 for
            ``gradcheck``; sums are formed in float32, float64 in float64) and one device (CPU
            or CUDA). Any strides: contiguous, channels_last, mixed and non-contiguous views
            are read in place.

    Returns:
        ``(B, C, H, W)`` in the inputs' dtype, on their device, in ``same_res[0]``'s memory
        format. float32 outputs equal the eager expression bit for bit (gradients: up to
        summation order).

    Supports: autograd (second derivatives too: with ``create_graph=True`` the backward is
    built from torch ops), torch.compile (fullgraph).
    """
    if torch.compiler.is_compiling():
        # Not check_inputs: its fast path compares sizes, a shape guard in traced code.
        return _hr_fuse_op(*_checked(same_res, low_res, kernel=True))
    same, low = check_inputs(same_res, low_res)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (*same, *low)):
        return _EagerHrFuse.apply(len(same), *same, *low)
    return _launch_forward(same, low)  # inference: no autograd node to build
