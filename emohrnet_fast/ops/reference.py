"""Pure-PyTorch references of the compiled ops: the oracle for tests and the path for export
or gradients. Written independently of the kernels (torch.stft and dense matmuls); the only
shared code is the constants in :mod:`emohrnet_fast.ops.mel`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops.mel import dct_matrix, mel_filterbank, stft_window
from emohrnet_fast.ops.spec_augment import MaskParams


def reflect_pad(x: Tensor, pad: int) -> Tensor:
    """Reflect-pad the last axis by ``pad`` on both sides; when ``pad >= time`` keep
    reflecting (``numpy.pad(mode='reflect')``), where ``F.pad`` would refuse."""
    length = x.shape[-1]
    if pad < length:
        return torch.nn.functional.pad(x, (pad, pad), mode="reflect")
    idx = torch.arange(-pad, length + pad, device=x.device)
    if length == 1:
        idx = torch.zeros_like(idx)
    else:
        period = 2 * (length - 1)
        idx = torch.remainder(idx, period)
        idx = torch.where(idx >= length, period - idx, idx)
    return x[..., idx]


def log_mel(
    waveform: Tensor, config: FrontEndConfig | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.log_mel`: same signature, shapes and conventions.

    ``waveform (..., time)`` float -> ``(..., n_features, frames)`` in ``dtype`` (float32 like
    the kernel; float64 gives an oracle for accuracy tests). Differentiable.
    """
    config = FrontEndConfig() if config is None else config
    lead, length = waveform.shape[:-1], waveform.shape[-1]
    x = waveform.reshape(-1, length).to(dtype)
    padded = reflect_pad(x, config.n_fft // 2)
    spec = torch.stft(
        padded,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window=stft_window(config).to(device=x.device, dtype=dtype),
        center=False,
        return_complex=True,
    )  # (B, n_freqs, frames)
    mag = spec.abs()
    bands = mag.pow(2) if config.power == 2.0 else mag
    if config.n_mels is not None:
        fb = mel_filterbank(config).to(device=x.device, dtype=dtype)
        bands = torch.matmul(fb.t(), bands)  # (B, n_mels, frames)
    if config.output == "log":
        bands = torch.log(bands + config.eps)
    elif config.output == "db":
        bands = config.db_multiplier * torch.log10(torch.clamp(bands, min=config.amin))
        if config.clamps_top_db:
            finite_or_inf = torch.where(torch.isnan(bands), float("-inf"), bands)
            floor = finite_or_inf.amax(dim=(-2, -1), keepdim=True) - config.top_db
            bands = torch.maximum(bands, floor)
    if config.n_mfcc is not None:
        dct = dct_matrix(config.n_mfcc, config.n_bands).to(device=x.device, dtype=dtype)
        bands = torch.matmul(dct.t(), bands)
    return bands.reshape(*lead, *bands.shape[1:])


def spec_augment(spec: Tensor, masks: MaskParams) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.spec_augment`: ``torch.where`` over a dense
    boolean mask built by broadcasting the ranges. Differentiable."""
    batch, features, frames = spec.shape[0], spec.shape[-2], spec.shape[-1]

    def covered(ranges: Tensor, size: int) -> Tensor:  # (B, n, 2) -> (B, size)
        idx = torch.arange(size, device=spec.device)
        inside = (idx >= ranges[..., :1].long()) & (idx < ranges[..., 1:].long())
        return inside.any(dim=1)

    mask = covered(masks.freq, features)[:, :, None] | covered(masks.time, frames)[:, None, :]
    middle = [1] * (spec.dim() - 3)
    mask = mask.view(batch, *middle, features, frames)
    values = masks.values.to(spec.dtype).view(batch, *middle, 1, 1)
    return torch.where(mask, values, spec)


def hr_fuse(same_res: Sequence[Tensor], low_res: Sequence[Tensor]) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.hr_fuse`: the HRNet fuse as eager PyTorch.

    ``relu(sum(same_res) + sum(F.interpolate(x, size=(H, W), mode="nearest") for x in
    low_res))`` with ``(H, W)`` the size of ``same_res[0]``. Differentiable.
    """
    size = tuple(same_res[0].shape[-2:])
    upsampled = (torch.nn.functional.interpolate(x, size=size, mode="nearest") for x in low_res)
    return torch.relu(sum(same_res) + sum(upsampled))
