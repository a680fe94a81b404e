"""Audio decoding and resampling.

Decoding is libsndfile through ``soundfile`` (WAV, FLAC, OGG/Vorbis and the other formats
libsndfile reads). Resampling is ``soxr`` (libsoxr, the SoX resampler): a band-limited
resampler with a linear-phase anti-aliasing filter (``"HQ"``: 20-bit precision, flat pass band
to about 91 % of the lower Nyquist frequency). Why soxr: it is librosa's default resampler,
ships as a small self-contained wheel with no torch dependency (torchaudio's wheels do not
import beside our CPU torch; see DESIGN.md), and its C core processes all channels in one call.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import soxr
import torch
from torch import Tensor

Quality = Literal["VHQ", "HQ", "MQ", "LQ", "QQ"]

# RIFF data-chunk sizes that writers use as "unknown" placeholders (streamed output);
# 0x7FFFF000 is SoX's, written when its output cannot seek (sox ... -t wav - > file.wav).
_PLACEHOLDER_SIZES = (0, 0x7FFFF000, 0xFFFFFFFF)


class AudioDecodeError(ValueError):
    """A file exists but holds no usable audio.

    ``kind`` names the failure in a few words: ``"undecodable"``, ``"truncated"``,
    ``"zero-length"`` or ``"non-finite samples"``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = False,
    quality: Quality = "HQ",
) -> tuple[Tensor, int]:
    """Decode an audio file, optionally downmixed and resampled.

    Args:
        path: a file libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: target rate in Hz; ``None`` keeps the file's rate.
        mono: average the channels and return ``(time,)`` instead of ``(channels, time)``.
        quality: soxr quality preset used when resampling (see :func:`resample`).

    Returns:
        ``(waveform, sample_rate)``: ``waveform`` float32 in [-1, 1] (integer PCM scaled),
        ``(channels, time)`` or, with ``mono=True``, ``(time,)``; ``sample_rate`` in Hz.

    Raises:
        TypeError: ``path`` is not a str or ``os.PathLike``.
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        AudioDecodeError: undecodable (an empty file included), truncated (a WAV holding fewer
            bytes than its header declares), zero-length or non-finite audio.
        ValueError: ``sample_rate`` is not a positive integer.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if sample_rate is not None:
        _check_rate("sample_rate", sample_rate)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r}: a folder, not an audio file")
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"path={str(path)!r}: cannot decode (an empty file)", "undecodable")
    try:
        data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError) as error:
        raise AudioDecodeError(
            f"path={str(path)!r}: cannot decode ({error})", "undecodable"
        ) from error
    if path.suffix.lower() == ".wav":
        _check_wav_complete(path)
    if data.shape[0] == 0:
        raise AudioDecodeError(f"path={str(path)!r}: zero-length audio (no samples)", "zero-length")
    if not np.isfinite(data).all():
        raise AudioDecodeError(
            f"path={str(path)!r}: non-finite samples (NaN or Inf)", "non-finite samples"
        )
    # (time, channels) -> (channels, time); downmix before resampling, it is cheaper.
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        waveform = waveform.mean(dim=0)
    if sample_rate is not None and sample_rate != file_rate:
        waveform = resample(waveform, file_rate, sample_rate, quality=quality)
        file_rate = sample_rate
        if waveform.shape[-1] == 0:  # a sample or two at a much higher rate
            raise AudioDecodeError(
                f"path={str(path)!r}: zero-length audio at {sample_rate} Hz ({data.shape[0]} "
                "sample(s) in the file)",
                "zero-length",
            )
    return waveform, int(file_rate)


def resample(
    waveform: Tensor, orig_sample_rate: int, new_sample_rate: int, *, quality: Quality = "HQ"
) -> Tensor:
    """Band-limited resampling along the last axis with soxr.

    Args:
        waveform: ``(..., time)`` float32 or float64, any device (computed on the CPU).
        orig_sample_rate: rate of ``waveform`` in Hz.
        new_sample_rate: target rate in Hz.
        quality: soxr preset: ``"VHQ"``, ``"HQ"`` (default), ``"MQ"``, ``"LQ"`` or ``"QQ"``.

    Returns:
        ``(..., round(time * new / orig))`` on ``waveform``'s device and dtype (float16 and
        bfloat16 are computed in float32). Equal rates return ``waveform`` itself.

    NaN or Inf anywhere in a waveform spread through the filter: that waveform's output is
    all NaN. Not differentiable: the result never requires grad.

    Raises:
        TypeError: ``waveform`` is not a tensor.
        ValueError: a rate that is not a positive integer, an unknown ``quality``, a
            non-floating or 0-d ``waveform``, or a ``meta`` one (it holds no samples).
    """
    _check_rate("orig_sample_rate", orig_sample_rate)
    _check_rate("new_sample_rate", new_sample_rate)
    if quality not in ("VHQ", "HQ", "MQ", "LQ", "QQ"):
        raise ValueError(f"quality={quality!r}: expected 'VHQ', 'HQ', 'MQ', 'LQ' or 'QQ'")
    if not isinstance(waveform, Tensor):
        raise TypeError(f"waveform: expected a torch.Tensor, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise ValueError(f"waveform: expected a floating tensor, got {waveform.dtype}")
    if waveform.dim() == 0:
        raise ValueError("waveform: expected shape (..., time), got a 0-d tensor")
    if waveform.is_meta:
        raise ValueError("waveform: a meta tensor holds no samples to resample")
    if orig_sample_rate == new_sample_rate:
        return waveform
    compute = torch.float64 if waveform.dtype == torch.float64 else torch.float32
    leading = waveform.shape[:-1]
    batch = waveform.detach().to("cpu", compute).reshape(math.prod(leading), waveform.shape[-1])
    if batch.numel() == 0:
        length = round(waveform.shape[-1] * new_sample_rate / orig_sample_rate)
        out = torch.zeros(batch.shape[0], length, dtype=compute)
    else:
        # soxr takes (frames, channels) and filters every channel with one filter state.
        out = soxr.resample(batch.T.numpy(), orig_sample_rate, new_sample_rate, quality=quality)
        out = torch.from_numpy(np.ascontiguousarray(out.reshape(-1, batch.shape[0]).T))
    out = out.reshape(*leading, out.shape[-1])
    return out.to(waveform.device, waveform.dtype)


def _check_rate(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a positive integer (Hz)")


def _check_wav_complete(path: Path) -> None:
    """Raise if a RIFF/WAVE file holds fewer audio bytes than its data chunk declares.

    libsndfile silently returns the samples that are there, so a download cut short would
    otherwise pass as a shorter utterance.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # RF64, W64, ...: libsndfile has already validated what it could
        position = 12
        while position + 8 <= size:
            f.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - position - 8
                if chunk_size not in _PLACEHOLDER_SIZES and chunk_size > available:
                    raise AudioDecodeError(
                        f"path={str(path)!r}: truncated (the header declares {chunk_size} "
                        f"bytes of audio, the file holds {available})",
                        "truncated",
                    )
                return
            position += 8 + chunk_size + (chunk_size & 1)  # chunks are word-aligned
