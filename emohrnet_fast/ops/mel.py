"""Constant tables of the front-end: the single source of the Mel filterbank formula.

Both the kernel set-up and the pure-PyTorch reference build their filterbank, window and DCT
here. Everything is computed in float64 and rounded to float32 once, so the kernel and the
reference see identical constants.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from emohrnet_fast.config import FrontEndConfig

_F64 = torch.float64


def hz_to_mel(freq: Tensor, mel_scale: str = "htk") -> Tensor:
    """Hz -> Mel (float64). ``htk``: 2595 log10(1 + f/700); ``slaney``: linear below 1 kHz,
    logarithmic above (librosa's default, ``htk=False``)."""
    freq = torch.as_tensor(freq, dtype=_F64)
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    linear = freq / f_sp
    log_part = min_log_mel + torch.log(freq.clamp(min=min_log_hz) / min_log_hz) / logstep
    return torch.where(freq >= min_log_hz, log_part, linear)


def mel_to_hz(mels: Tensor, mel_scale: str = "htk") -> Tensor:
    """Mel -> Hz (float64), the inverse of :func:`hz_to_mel`."""
    mels = torch.as_tensor(mels, dtype=_F64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    log_part = min_log_hz * torch.exp(logstep * (mels - min_log_mel))
    return torch.where(mels >= min_log_mel, log_part, f_sp * mels)


def band_edges_hz(config: FrontEndConfig) -> Tensor:
    """The ``n_mels + 2`` corner frequencies (Hz, float64): band m rises from edge m to edge
    m+1 and falls to edge m+2."""
    if config.n_mels is None:
        raise ValueError("config.n_mels is None: a linear spectrogram has no Mel bands")
    m_min = hz_to_mel(torch.tensor(float(config.f_min)), config.mel_scale)
    m_max = hz_to_mel(torch.tensor(config.resolved_f_max), config.mel_scale)
    return mel_to_hz(
        torch.linspace(float(m_min), float(m_max), config.n_mels + 2, dtype=_F64), config.mel_scale
    )


def mel_filterbank(config: FrontEndConfig) -> Tensor:
    """Triangular Mel filterbank ``(n_freqs, n_mels)`` float64, as torchaudio's
    ``melscale_fbanks`` and librosa's ``filters.mel`` (bin k at ``k * sample_rate / n_fft``
    Hz). ``norm='slaney'`` scales band m by ``2 / (edge[m+2] - edge[m])``."""
    if config.n_mels is None:
        raise ValueError("mel_filterbank needs a config with n_mels set")
    freqs = torch.linspace(0.0, config.sample_rate / 2, config.n_freqs, dtype=_F64)
    edges = band_edges_hz(config)
    widths = edges[1:] - edges[:-1]  # (n_mels + 1,)
    slopes = edges[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if config.norm == "slaney":
        fb = fb * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return fb


def check_bands_nonempty(config: FrontEndConfig) -> None:
    """Raise ``ValueError`` naming the first Mel band that no FFT bin falls into."""
    fb = mel_filterbank(config)
    empty = (fb.amax(dim=0) == 0).nonzero().flatten().tolist()
    if not empty:
        return
    edges = band_edges_hz(config)
    band = empty[0]
    bin_hz = config.sample_rate / config.n_fft
    raise ValueError(
        f"FrontEndConfig: Mel band {band} ({edges[band]:.1f}-{edges[band + 2]:.1f} Hz) contains "
        f"no FFT bin (bins are {bin_hz:.2f} Hz apart with n_fft={config.n_fft}); "
        f"{len(empty)} of n_mels={config.n_mels} bands are empty. Use fewer n_mels, a larger "
        f"n_fft, a higher f_min or mel_scale='slaney'."
    )


def dct_matrix(n_mfcc: int, n_bands: int) -> Tensor:
    """DCT-II with orthonormal scaling, ``(n_bands, n_mfcc)`` float64 (torchaudio's
    ``create_dct(n_mfcc, n_mels, norm='ortho')``): ``mfcc = dct.T @ log_bands``."""
    n = torch.arange(n_bands, dtype=_F64)
    k = torch.arange(n_mfcc, dtype=_F64)[:, None]
    dct = torch.cos(math.pi / n_bands * (n + 0.5) * k)  # (n_mfcc, n_bands)
    dct[0] *= 1.0 / math.sqrt(2.0)
    dct *= math.sqrt(2.0 / n_bands)
    return dct.t().contiguous()


def stft_window(config: FrontEndConfig) -> Tensor:
    """Periodic Hann of ``win_length`` zero-padded to ``n_fft`` and centred (torch.stft's
    placement: ``(n_fft - win_length) // 2`` zeros on the left), float64."""
    win_length = config.resolved_win_length
    n = torch.arange(win_length, dtype=_F64)
    hann = 0.5 - 0.5 * torch.cos(2.0 * math.pi * n / win_length)
    left = (config.n_fft - win_length) // 2
    return torch.nn.functional.pad(hann, (left, config.n_fft - win_length - left))


def twiddle_table(n_fft: int) -> Tensor:
    """``(n_fft, 2)`` float64: ``cos(2 pi t / n_fft), -sin(2 pi t / n_fft)``."""
    angle = 2.0 * math.pi * torch.arange(n_fft, dtype=_F64) / n_fft
    return torch.stack([torch.cos(angle), -torch.sin(angle)], dim=1)


class FrontEndTables(NamedTuple):
    """Constant inputs of the fused kernel, float32 / int32, all on one device.

    The filterbank is stored sparsely, one contiguous run of weights per band (each FFT bin
    feeds at most two triangles, so the kernel does ~2 FMAs per bin instead of n_mels)."""

    window: Tensor  # (n_fft,)
    twiddles: Tensor  # (n_fft, 2)
    fb_weights: Tensor  # (nnz,), empty without a Mel filterbank
    fb_offsets: Tensor  # (n_mels + 1,) int32, empty without a Mel filterbank
    fb_first_bin: Tensor  # (n_mels,) int32: FFT bin of each band's first weight
    dct: Tensor  # (n_bands, n_mfcc), empty without MFCC

    def to(self, device: torch.device | str) -> FrontEndTables:
        return FrontEndTables(*(t.to(device) for t in self))


def sparse_bands(fb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per band, the run from its first to its last non-zero weight of ``fb (n_freqs, n_mels)``:
    ``(weights float32, offsets int32 (n_mels + 1), first_bin int32 (n_mels))``."""
    fb32 = fb.to(torch.float32)
    weights, offsets, first = [], [0], []
    for band in range(fb32.shape[1]):
        nonzero = fb32[:, band].nonzero().flatten()
        lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
        weights.append(fb32[lo:hi, band])
        offsets.append(offsets[-1] + hi - lo)
        first.append(lo)
    return (
        torch.cat(weights),
        torch.tensor(offsets, dtype=torch.int32),
        torch.tensor(first, dtype=torch.int32),
    )


def build_tables(config: FrontEndConfig) -> FrontEndTables:
    """All kernel constants of ``config`` on the CPU (use :func:`cached_tables` per call)."""
    empty_f = torch.empty(0, dtype=torch.float32)
    empty_i = torch.empty(0, dtype=torch.int32)
    if config.n_mels is not None:
        fb_weights, fb_offsets, fb_first_bin = sparse_bands(mel_filterbank(config))
    else:
        fb_weights, fb_offsets, fb_first_bin = empty_f, empty_i, empty_i
    dct = (
        dct_matrix(config.n_mfcc, config.n_bands).to(torch.float32)
        if config.n_mfcc is not None
        else empty_f
    )
    return FrontEndTables(
        window=stft_window(config).to(torch.float32),
        twiddles=twiddle_table(config.n_fft).to(torch.float32),
        fb_weights=fb_weights,
        fb_offsets=fb_offsets,
        fb_first_bin=fb_first_bin,
        dct=dct,
    )


_CACHE: dict[tuple[tuple, torch.device], FrontEndTables] = {}  # (config.as_tuple(), device)


def cached_tables(config: FrontEndConfig, device: torch.device) -> FrontEndTables:
    """Tables of ``config`` on ``device``, built once per (config, device).

    No lock: two threads racing on a new key both build identical tables and ``setdefault``
    keeps one (and a lock would stop torch.compile from tracing callers with fullgraph=True).
    """
    # torch.compile folds the call into a constant. Plain tuples both ways work with every
    # release we test: torch 2.9 cannot pass a frozen dataclass in, 2.11 cannot unpack a
    # NamedTuple coming out.
    return FrontEndTables(*_cached_tables(config.as_tuple(), torch.device(device)))


@torch.compiler.assume_constant_result
def _cached_tables(fields: tuple, device: torch.device) -> tuple[Tensor, ...]:
    tables = _CACHE.get((fields, device))
    if tables is None:
        if torch.compiler.is_exporting():
            # Tables built while torch.export traces would be fake tensors, and cached they
            # would break every later call.
            raise ValueError(
                "log_mel under torch.export: pass tables= (a FrontEnd module's buffers, or "
                "build_tables(config) registered as buffers)"
            )
        built = build_tables(FrontEndConfig(*fields)).to(device)
        tables = _CACHE.setdefault((fields, device), built)
    return tuple(tables)
