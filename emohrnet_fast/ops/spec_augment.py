"""SpecAugment masking as a PyTorch custom op over the compiled core (CPU + CUDA)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emohrnet_fast._extension import _C
from emohrnet_fast.ops._checks import check_device_supported, check_same_device, check_tensor
from emohrnet_fast.ops._launch import cuda_stream_context


@dataclass(frozen=True)
class MaskParams:
    """Drawn SpecAugment masks of a batch: what the kernels apply, with no randomness left.

    Ranges are ``[start, end)``; a zero-width range masks nothing. Values outside the axis are
    harmless (they are only compared), so a range may be clipped by the axis.
    """

    freq: Tensor  # (B, n_freq_masks, 2) int32: ranges along the feature (Mel/MFCC) axis
    time: Tensor  # (B, n_time_masks, 2) int32: ranges along the frame axis
    values: Tensor  # (B,) float32: what masked features become

    @property
    def batch(self) -> int:
        return self.values.shape[0]

    def validate(self, batch: int, device: torch.device, name: str = "masks") -> None:
        """Raise ``TypeError``/``ValueError`` naming the field unless these masks fit a batch of
        ``batch`` examples on ``device``."""
        for field, rank in (("freq", 3), ("time", 3), ("values", 1)):
            t = check_tensor(f"{name}.{field}", getattr(self, field))
            check_same_device(f"{name}.{field}", t, device)
            if t.dim() != rank or t.shape[0] != batch or (rank == 3 and t.shape[2] != 2):
                want = f"({batch}, n, 2)" if rank == 3 else f"({batch},)"
                raise ValueError(f"{name}.{field}: expected shape {want}, got {tuple(t.shape)}")
            expected = torch.float32 if field == "values" else torch.int32
            if t.dtype != expected:
                raise TypeError(f"{name}.{field}: expected {expected}, got {t.dtype}")

    def contiguous(self) -> MaskParams:
        return MaskParams(self.freq.contiguous(), self.time.contiguous(), self.values.contiguous())


def mask_pointers(masks: MaskParams | None) -> dict:
    """Keyword arguments of the compiled core's mask parameters (no masks: null pointers)."""
    if masks is None:
        return dict(freq_masks=0, n_freq_masks=0, time_masks=0, n_time_masks=0, mask_values=0)
    return dict(
        freq_masks=masks.freq.data_ptr(),
        n_freq_masks=masks.freq.shape[1],
        time_masks=masks.time.data_ptr(),
        n_time_masks=masks.time.shape[1],
        mask_values=masks.values.data_ptr(),
    )


def _launch(spec: Tensor, out: Tensor, masks: MaskParams) -> None:
    frames = spec.shape[-1]
    guard, stream = cuda_stream_context(spec)
    with guard:
        _C.spec_augment(
            input=spec.data_ptr(),
            out=out.data_ptr(),
            batch=spec.shape[0],
            rows_per_example=spec[0].numel() // frames,
            features=spec.shape[-2],
            frames=frames,
            **mask_pointers(masks),
            num_threads=torch.get_num_threads(),
            cuda=spec.is_cuda,
            stream=stream,
        )


def _masked(spec: Tensor, masks: MaskParams) -> Tensor:
    out = torch.empty_like(spec)
    _launch(spec, out, masks)
    return out


@torch.library.custom_op("emohrnet_fast::spec_augment", mutates_args=())
def _spec_augment_op(
    spec: Tensor, freq_masks: Tensor, time_masks: Tensor, mask_values: Tensor
) -> Tensor:
    return _masked(spec, MaskParams(freq_masks, time_masks, mask_values))


@torch.library.custom_op("emohrnet_fast::spec_augment_", mutates_args=("spec",))
def _spec_augment_inplace_op(
    spec: Tensor, freq_masks: Tensor, time_masks: Tensor, mask_values: Tensor
) -> None:
    _launch(spec, spec, MaskParams(freq_masks, time_masks, mask_values))


@_spec_augment_op.register_fake
def _(spec, freq_masks, time_masks, mask_values):
    return torch.empty_like(spec)


def _setup_context(ctx, inputs, output):
    _spec, freq_masks, time_masks, _mask_values = inputs
    ctx.save_for_backward(freq_masks, time_masks)


def _backward(ctx, grad):
    freq_masks, time_masks = ctx.saved_tensors
    # d out / d spec = 1 outside the masks, 0 inside: the same op with fill value 0.
    zeros = grad.new_zeros(grad.shape[0])
    return _spec_augment_op(grad.contiguous(), freq_masks, time_masks, zeros), None, None, None


_spec_augment_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerSpecAugment(torch.autograd.Function):
    """The custom op's launches without its Python dispatch (see ``ops.hr_fuse``'s
    ``_EagerHrFuse``), for eager calls that need a gradient. Traced code still sees the
    custom op."""

    @staticmethod
    def forward(ctx, spec: Tensor, masks: MaskParams) -> Tensor:
        ctx.save_for_backward(masks.freq, masks.time)
        return _masked(spec, masks)

    @staticmethod
    def backward(ctx, grad: Tensor):
        freq_masks, time_masks = ctx.saved_tensors
        zeros = MaskParams(freq_masks, time_masks, grad.new_zeros(grad.shape[0]))
        # The op is linear in spec, its gradient the same op: through apply, so that a
        # second derivative (create_graph=True) sees it.
        return _EagerSpecAugment.apply(grad.contiguous(), zeros), None


def _checked(spec: Tensor, masks: MaskParams) -> MaskParams:
    spec = check_tensor("spec", spec)
    check_device_supported("spec", spec)
    if spec.dtype != torch.float32:
        raise TypeError(f"spec: expected float32 features, got {spec.dtype}")
    if spec.dim() < 3:
        raise ValueError(f"spec: expected shape (B, [C,] F, T), got {tuple(spec.shape)}")
    if spec.numel() == 0:
        raise ValueError(f"spec: expected non-empty features, got shape {tuple(spec.shape)}")
    if not isinstance(masks, MaskParams):
        raise TypeError(f"masks: expected MaskParams, got {type(masks).__name__}")
    masks.validate(spec.shape[0], spec.device)
    return masks.contiguous()


def spec_augment(spec: Tensor, masks: MaskParams) -> Tensor:
    """Apply drawn SpecAugment masks to a batch of features in one pass.

    ``out[b, ..., f, t] = masks.values[b]`` where ``f`` lies in one of example b's frequency
    ranges or ``t`` in one of its time ranges, else ``spec[b, ..., f, t]``. Channels between
    batch and features share their example's masks. NaN in ``spec`` passes through outside the
    masks and is overwritten inside them.

    Args:
        spec: ``(B, [C, ...,] F, T)`` float32 on CPU or CUDA (non-contiguous inputs are copied).
        masks: :class:`MaskParams` for B examples on the same device, e.g. from
            :meth:`emohrnet_fast.augment.SpecAugment.draw`.

    Returns:
        A new tensor like ``spec``. Supports: autograd (the gradient is zero inside the masks;
        the fill values are constants; second derivatives too), torch.compile.
    """
    masks = _checked(spec, masks)
    spec = spec.contiguous()
    if torch.compiler.is_compiling():
        return _spec_augment_op(spec, masks.freq, masks.time, masks.values)
    if torch.is_grad_enabled() and spec.requires_grad:
        return _EagerSpecAugment.apply(spec, masks)
    return _masked(spec, masks)  # no autograd node to build


def spec_augment_(spec: Tensor, masks: MaskParams) -> Tensor:
    """In-place :func:`spec_augment`: overwrites the masked features of ``spec`` and returns it.

    Saves the output allocation (on CPU a fresh 50-MB tensor costs as much as the masking
    itself, in page faults). ``spec`` must be contiguous and must not require grad; use
    :func:`spec_augment` for autograd.
    """
    masks = _checked(spec, masks)
    if not spec.is_contiguous():
        raise ValueError("spec: the in-place spec_augment_ needs a contiguous tensor")
    if spec.requires_grad:
        raise RuntimeError("spec_augment_ is not differentiable; use spec_augment")
    if torch.compiler.is_compiling():
        _spec_augment_inplace_op(spec, masks.freq, masks.time, masks.values)
    else:
        _launch(spec, spec, masks)
        # What the custom op's mutates_args does: autograd then sees the write (a tensor
        # saved for some backward and changed here raises instead of giving wrong grads).
        torch.autograd.graph.increment_version(spec)
    return spec
