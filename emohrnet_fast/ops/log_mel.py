"""The fused log-Mel front-end as a PyTorch custom op over the compiled core."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from emohrnet_fast._extension import _C
from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops._checks import (
    check_config,
    check_device_supported,
    check_same_device,
    check_tensor,
    check_waveform,
)
from emohrnet_fast.ops._launch import cuda_stream_context
from emohrnet_fast.ops.mel import FrontEndTables, cached_tables
from emohrnet_fast.ops.spec_augment import MaskParams, mask_pointers

_OUTPUT_CODES = {"power": 0, "log": 1, "db": 2}


def _derived_sizes(n_fft: int, fb_offsets: Tensor, dct: Tensor) -> tuple[int, int]:
    """(n_bands, n_out) from the tables: empty filterbank -> linear bins; empty DCT -> no MFCC."""
    n_bands = fb_offsets.numel() - 1 if fb_offsets.numel() else n_fft // 2 + 1
    n_out = dct.shape[-1] if dct.numel() else n_bands
    return n_bands, n_out


def _launch(
    waveform: Tensor,
    window: Tensor,
    twiddles: Tensor,
    fb_weights: Tensor,
    fb_offsets: Tensor,
    fb_first_bin: Tensor,
    dct: Tensor,
    n_fft: int,
    hop_length: int,
    power: int,
    output: int,
    eps: float,
    amin: float,
    db_multiplier: float,
    top_db: float | None,
    freq_masks: Tensor | None = None,
    time_masks: Tensor | None = None,
    mask_values: Tensor | None = None,
) -> Tensor:
    batch, length = waveform.shape
    n_bands, n_out = _derived_sizes(n_fft, fb_offsets, dct)
    frames = 1 + length // hop_length
    out = waveform.new_empty((batch, n_out, frames))
    clamp = top_db is not None
    n_mfcc = dct.shape[-1] if dct.numel() else 0
    scratch = waveform.new_empty((batch, n_bands, frames)) if clamp and n_mfcc else None
    example_max = waveform.new_empty((batch,)) if clamp else None
    masks = (
        MaskParams(freq_masks, time_masks, mask_values)
        if freq_masks is not None and time_masks is not None and mask_values is not None
        else None
    )
    guard, stream = cuda_stream_context(waveform)
    with guard:
        _C.log_mel(
            waveform=waveform.data_ptr(),
            window=window.data_ptr(),
            twiddles=twiddles.data_ptr(),
            fb_weights=fb_weights.data_ptr(),
            fb_offsets=fb_offsets.data_ptr(),
            fb_first_bin=fb_first_bin.data_ptr(),
            dct=dct.data_ptr(),
            out=out.data_ptr(),
            bands_scratch=scratch.data_ptr() if scratch is not None else 0,
            example_max=example_max.data_ptr() if example_max is not None else 0,
            batch=batch,
            length=length,
            n_fft=n_fft,
            hop_length=hop_length,
            n_bands=n_bands,
            n_mfcc=n_mfcc,
            use_mel=fb_offsets.numel() > 0,
            power=power,
            output=output,
            log_eps=eps,
            db_amin=amin,
            db_multiplier=db_multiplier,
            clamp_top_db=clamp,
            top_db=top_db if top_db is not None else 0.0,
            num_threads=torch.get_num_threads(),
            **mask_pointers(masks),
            cuda=waveform.is_cuda,
            stream=stream,
        )
    return out


# Traced code (torch.compile) calls the custom op; eager calls skip its Python dispatch, about
# 25 us a call on the 2-core CPU: a third of a B=1 call's time on an H200 (0.083 ms).
_log_mel_op = torch.library.custom_op("emohrnet_fast::log_mel", mutates_args=())(_launch)


@_log_mel_op.register_fake
def _(
    waveform,
    window,
    twiddles,
    fb_weights,
    fb_offsets,
    fb_first_bin,
    dct,
    n_fft,
    hop_length,
    power,
    output,
    eps,
    amin,
    db_multiplier,
    top_db,
    freq_masks=None,
    time_masks=None,
    mask_values=None,
):
    batch, length = waveform.shape
    _, n_out = _derived_sizes(n_fft, fb_offsets, dct)
    return waveform.new_empty((batch, n_out, 1 + length // hop_length))


def op_arguments(config: FrontEndConfig) -> dict:
    """The scalar arguments of the ``emohrnet_fast::log_mel`` custom op for ``config``."""
    return dict(
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        power=int(config.power),
        output=_OUTPUT_CODES[config.output],
        eps=float(config.eps),
        amin=float(config.amin),
        db_multiplier=config.db_multiplier,
        top_db=config.applied_top_db,
    )


# Element types the kernels read each table as: a table of another dtype would be read as
# garbage (integer offsets from float bits), so it is rejected, not converted.
_TABLE_DTYPES = {
    "window": torch.float32,
    "twiddles": torch.float32,
    "fb_weights": torch.float32,
    "fb_offsets": torch.int32,
    "fb_first_bin": torch.int32,
    "dct": torch.float32,
}


def _check_tables(tables: FrontEndTables, config: FrontEndConfig, device: torch.device) -> None:
    """Types, dtypes, devices and shapes of explicit ``tables``. Their values are trusted
    (they come from :func:`~emohrnet_fast.ops.mel.build_tables`, e.g. as module buffers)."""
    if not isinstance(tables, FrontEndTables):
        raise TypeError(
            f"tables: expected FrontEndTables (e.g. FrontEnd.tables()), got {type(tables).__name__}"
        )
    hint = "; move the module with .to(device) or pass tables built for this device"
    for name, table in zip(FrontEndTables._fields, tables, strict=True):
        check_tensor(f"tables.{name}", table)
        check_same_device(f"tables.{name}", table, device, hint)
        if table.dtype != _TABLE_DTYPES[name]:
            raise TypeError(f"tables.{name}: expected {_TABLE_DTYPES[name]}, got {table.dtype}")
        if not table.is_contiguous():
            raise ValueError(f"tables.{name} must be contiguous")
    if tables.window.shape != (config.n_fft,) or tables.twiddles.shape != (config.n_fft, 2):
        raise ValueError(
            f"tables were built for another n_fft (window {tuple(tables.window.shape)}, "
            f"config n_fft={config.n_fft})"
        )
    n_bands, n_out = _derived_sizes(config.n_fft, tables.fb_offsets, tables.dct)
    if (n_bands, n_out) != (config.n_bands, config.n_features):
        raise ValueError(
            f"tables give {n_bands} bands / {n_out} outputs, config wants "
            f"{config.n_bands} / {config.n_features}"
        )
    n_mels = config.n_mels or 0
    expected = {
        "fb_weights": None,  # (nnz,): its length is in the offsets
        "fb_offsets": (n_mels + 1,) if n_mels else (0,),
        "fb_first_bin": (n_mels,),
        "dct": (config.n_bands, config.n_mfcc) if config.n_mfcc is not None else (0,),
    }
    for name, shape in expected.items():
        table = getattr(tables, name)
        if (shape is None and table.dim() != 1) or (shape is not None and table.shape != shape):
            want = "(nnz,)" if shape is None else str(shape)
            raise ValueError(
                f"tables.{name}: expected shape {want} for this config, got {tuple(table.shape)}"
            )


def log_mel(
    waveform: Tensor,
    config: FrontEndConfig | None = None,
    *,
    tables: FrontEndTables | None = None,
    augment: MaskParams | None = None,
) -> Tensor:
    """Fused log-Mel (or linear, or MFCC) features of a batch of waveforms.

    One pass per frame: reflect-pad framing (center=True), periodic Hann window, real FFT,
    ``|X|^power``, Mel filterbank, then ``config.output`` (``power``, ``log`` or ``db`` with a
    per-example ``top_db`` floor) and, with ``n_mfcc``, the DCT-II (ortho). Numerically a
    drop-in for ``torchaudio.transforms.MelSpectrogram`` + ``AmplitudeToDB`` (see
    :class:`~emohrnet_fast.FrontEndConfig` for the documented differences).

    Args:
        waveform: ``(..., time)`` real floating tensor on CPU or CUDA, ``time >= 1``. float32
            is used as is; float64 / float16 / bfloat16 are converted to float32 (the kernels
            compute in float32) and the result is float32. Non-contiguous or expanded inputs
            are copied to a contiguous float32 buffer. A NaN or Inf sample makes every value
            of the frames whose window touches it NaN (the transform meets inf - inf), and
            those frames stay out of the ``top_db`` floor; nothing crashes. Finite samples so
            large that the power overflows float32 (beyond ~1e17) give ``+inf`` bands, and
            the example's ``top_db`` floor follows them to ``+inf``. Waveforms of at most
            ``n_fft // 2`` samples, where torch.stft's reflect padding fails, are padded by
            repeated reflection (``numpy.pad`` 'reflect').
        config: the front-end settings; ``None`` means ``FrontEndConfig()``.
        tables: precomputed constants (``FrontEnd`` module buffers); by default they are built
            once per (config, device) and cached.
        augment: SpecAugment masks to write directly into the output (one per flattened batch
            example, over the ``(n_features, frames)`` axes; see
            :meth:`emohrnet_fast.augment.SpecAugment.draw`), so training pays no extra pass.
            Applied after the ``top_db`` clamp, exactly as ``spec_augment(log_mel(x), masks)``.

    Returns:
        ``(..., n_features, frames)`` float32 on ``waveform``'s device, with
        ``n_features = n_mfcc or n_mels or n_fft // 2 + 1`` and ``frames = 1 + time // hop``.

    Supports: torch.compile (fullgraph). Not differentiable: for gradients with respect to
    the waveform use :func:`emohrnet_fast.ops.reference.log_mel`.
    """
    config = check_config(config)
    waveform = check_waveform("waveform", waveform)
    check_device_supported("waveform", waveform)
    if waveform.requires_grad:
        raise RuntimeError(
            "log_mel is not differentiable; use emohrnet_fast.ops.reference.log_mel for "
            "gradients with respect to the waveform, or pass waveform.detach()"
        )
    if tables is None:
        tables = cached_tables(config, waveform.device)
    else:
        _check_tables(tables, config, waveform.device)
    lead, length = waveform.shape[:-1], waveform.shape[-1]
    flat = waveform.reshape(-1, length).to(torch.float32).contiguous()
    mask_args = {}
    if augment is not None:
        if not isinstance(augment, MaskParams):
            raise TypeError(f"augment: expected MaskParams, got {type(augment).__name__}")
        augment.validate(flat.shape[0], flat.device, name="augment")
        augment = augment.contiguous()
        mask_args = dict(
            freq_masks=augment.freq, time_masks=augment.time, mask_values=augment.values
        )
    launch: Callable[..., Tensor] = _log_mel_op if torch.compiler.is_compiling() else _launch
    out = launch(flat, *tables, **op_arguments(config), **mask_args)
    return out.reshape(*lead, *out.shape[1:])
