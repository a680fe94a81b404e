"""Pure-PyTorch references of the compiled ops: the oracle for tests and the path for export
or gradients. Written independently of the kernels (torch.stft and dense matmuls); the only
shared code is the constants in :mod:`emohrnet_fast.ops.mel`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops._checks import check_config, check_tensor, check_waveform
from emohrnet_fast.ops.hr_fuse import check_inputs as check_hr_fuse_inputs
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


class DenseTables(NamedTuple):
    """The reference front-end's constants: what torch.stft and two dense matmuls need."""

    window: Tensor  # (n_fft,)
    filterbank: Tensor | None  # (n_freqs, n_mels); None without a Mel filterbank
    dct: Tensor | None  # (n_bands, n_mfcc); None without MFCC


def dense_tables(config: FrontEndConfig, dtype: torch.dtype = torch.float32) -> DenseTables:
    """:class:`DenseTables` of ``config`` on the CPU, built now (module buffers, e.g. for
    :func:`emohrnet_fast.export_onnx`; :func:`log_mel` caches its own)."""
    window = stft_window(config).to(dtype)
    fb = None if config.n_mels is None else mel_filterbank(config).to(dtype)
    dct = None
    if config.n_mfcc is not None:
        dct = dct_matrix(config.n_mfcc, config.n_bands).to(dtype)
    return DenseTables(window, fb, dct)


@torch.compiler.disable  # traced code takes them from the cache too, as constants
@functools.lru_cache(maxsize=32)
def _tables(config: FrontEndConfig, device: torch.device, dtype: torch.dtype) -> tuple:
    """Window, filterbank and DCT of ``config`` on ``device``: made once, as the kernel's
    tables are (and as torchaudio keeps its own as module buffers), so the eager baseline
    does not pay for building them on every call. A plain tuple: what compiled callers
    unpack on every torch release we test."""
    # Built outside inference mode even when the first call is inside it: an inference
    # tensor in the cache would break every later call that needs gradients.
    with torch.inference_mode(False):
        return tuple(None if t is None else t.to(device) for t in dense_tables(config, dtype))


def log_mel(
    waveform: Tensor,
    config: FrontEndConfig | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    check: bool = True,
    tables: DenseTables | None = None,
) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.log_mel`: same signature, shapes and conventions.

    ``waveform (..., time)`` float -> ``(..., n_features, frames)`` in ``dtype`` (float32 like
    the kernel; float64 gives an oracle for accuracy tests). Differentiable. Inputs are checked
    as the kernel checks them (same errors), except that any device PyTorch runs on is fine
    (``meta`` included, for shapes). Two documented differences on non-finite values: where
    the power overflows ``dtype`` (float32: samples beyond ~1e17) the dense filterbank product
    meets ``inf * 0`` and gives NaN in every band of the frame, where the kernel's sparse one
    gives ``+inf`` (use ``dtype=torch.float64`` for such inputs); and without a filterbank
    (``n_mels=None``) an Inf sample gives ``+inf`` frames (torch.stft), where the kernel's are
    NaN, so there the ``top_db`` floor becomes ``+inf`` too. ``check=False`` skips the input
    checks, as a user's own eager code would (the benchmarks' baselines use it).
    ``tables``: :func:`dense_tables` of ``config`` in ``dtype`` on the waveform's device
    (e.g. module buffers); by default they are built once per (config, device, dtype) and
    cached. ``torch.export`` needs them passed in: tables built while it traces are fake
    tensors, which neither the exported program nor the cache may keep.

    Raises:
        ValueError: under ``torch.export`` without ``tables``.
    """
    if check:
        config = check_config(config)
        waveform = check_waveform("waveform", waveform)
    config = FrontEndConfig() if config is None else config
    lead, length = waveform.shape[:-1], waveform.shape[-1]
    x = waveform.reshape(-1, length).to(dtype)
    if tables is None:
        if torch.compiler.is_exporting():
            raise ValueError(
                "reference.log_mel under torch.export: pass tables=dense_tables(config) (e.g. "
                "registered as module buffers); tables built while tracing are fake tensors"
            )
        tables = _tables(config, x.device, dtype)
    window, fb, dct = tables
    padded = reflect_pad(x, config.n_fft // 2)
    spec = torch.stft(
        padded,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        window=window,
        center=False,
        return_complex=True,
    )  # (B, n_freqs, frames)
    mag = spec.abs()
    bands = mag.pow(2) if config.power == 2.0 else mag
    if fb is not None:
        bands = torch.matmul(fb.t(), bands)  # (B, n_mels, frames)
    if config.output == "log":
        bands = torch.log(bands + config.eps)
    elif config.output == "db":
        bands = config.db_multiplier * torch.log10(torch.clamp(bands, min=config.amin))
        top_db = config.applied_top_db
        if top_db is not None:
            finite_or_inf = torch.where(torch.isnan(bands), float("-inf"), bands)
            floor = finite_or_inf.amax(dim=(-2, -1), keepdim=True) - top_db
            bands = torch.maximum(bands, floor)
    if dct is not None:
        bands = torch.matmul(dct.t(), bands)
    return bands.reshape(*lead, *bands.shape[1:])


def spec_augment(spec: Tensor, masks: MaskParams, *, check: bool = True) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.spec_augment`: ``torch.where`` over a dense
    boolean mask built by broadcasting the ranges. Differentiable.

    Checked as the kernel checks its inputs, except that any real floating dtype, any device
    PyTorch runs on and empty features are fine; ``check=False`` skips the checks (benchmark
    baselines)."""
    if check:
        spec = check_tensor("spec", spec)
        if not spec.is_floating_point():
            raise TypeError(f"spec: expected real floating-point features, got {spec.dtype}")
        if spec.dim() < 3:
            raise ValueError(f"spec: expected shape (B, [C,] F, T), got {tuple(spec.shape)}")
        if not isinstance(masks, MaskParams):
            raise TypeError(f"masks: expected MaskParams, got {type(masks).__name__}")
        masks.validate(spec.shape[0], spec.device)
    batch, features, frames = spec.shape[0], spec.shape[-2], spec.shape[-1]
    middle = [1] * (spec.dim() - 3)
    mask = dense_mask(masks, features, frames).view(batch, *middle, features, frames)
    values = masks.values.to(spec.dtype).view(batch, *middle, 1, 1)
    return torch.where(mask, values, spec)


def dense_mask(masks: MaskParams, features: int, frames: int) -> Tensor:
    """``(B, features, frames)`` bool, True where ``masks`` cover a cell: the ranges broadcast
    against the axes' indices (half-open, clamped to the axes by the comparison)."""

    def covered(ranges: Tensor, size: int) -> Tensor:  # (B, n, 2) -> (B, size)
        idx = torch.arange(size, device=ranges.device)
        inside = (idx >= ranges[..., :1].long()) & (idx < ranges[..., 1:].long())
        return inside.any(dim=1)

    return covered(masks.freq, features)[:, :, None] | covered(masks.time, frames)[:, None, :]


def hr_fuse(same_res: Sequence[Tensor], low_res: Sequence[Tensor], *, check: bool = True) -> Tensor:
    """Reference of :func:`emohrnet_fast.ops.hr_fuse`: the HRNet fuse as eager PyTorch.

    ``relu(sum(same_res) + sum(F.interpolate(x, size=(H, W), mode="nearest") for x in
    low_res))`` with ``(H, W)`` the size of ``same_res[0]``. Differentiable. Inputs are checked
    as the kernel checks them (same errors), except that any device PyTorch runs on is fine;
    ``check=False`` skips the checks (the model's ``fuse="reference"`` path and benchmark
    baselines, which should cost what a user's own eager code costs).
    """
    if check:
        same_res, low_res = check_hr_fuse_inputs(same_res, low_res, kernel=False)
    size = tuple(same_res[0].shape[-2:])
    # Summed as written above, but from the first term: Python's sum() starts at 0, and x + 0
    # is a full extra pass over the data that a user's own code would not make.
    total = same_res[0]
    for x in same_res[1:]:
        total = total + x
    upsampled = None
    for x in low_res:
        up = torch.nn.functional.interpolate(x, size=size, mode="nearest")
        upsampled = up if upsampled is None else upsampled + up
    return torch.relu(total if upsampled is None else total + upsampled)
