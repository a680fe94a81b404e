"""Feature front-ends as ``nn.Module``s over :func:`emohrnet_fast.ops.log_mel`.

Arguments are :class:`~emohrnet_fast.FrontEndConfig` fields (torchaudio's names); anything
not given keeps the config default, so defaults live in one place. The kernel constants are
non-persistent buffers: ``module.to(device)`` moves them, and state dicts stay empty.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.ops.log_mel import log_mel
from emohrnet_fast.ops.mel import FrontEndTables, build_tables
from emohrnet_fast.ops.spec_augment import MaskParams


class FrontEnd(nn.Module):
    """Any front-end config as a module: ``(..., time)`` -> ``(..., n_features, frames)``."""

    def __init__(self, config: FrontEndConfig | None = None, **overrides) -> None:
        super().__init__()
        config = FrontEndConfig() if config is None else config
        if not isinstance(config, FrontEndConfig):
            raise TypeError(
                f"{type(self).__name__} config: expected FrontEndConfig or None, got "
                f"{type(config).__name__} (pass single fields as keyword arguments)"
            )
        self.config = config.replace(**overrides) if overrides else config
        for name, table in zip(FrontEndTables._fields, build_tables(self.config), strict=False):
            self.register_buffer(name, table, persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # The kernels read float32 tables and write float32 features, so .double(), .half()
        # or .to(dtype) of a model holding a front-end moves its tables but keeps them
        # float32, rebuilt (a round trip through float16 would have rounded them).
        fresh = None
        for name in FrontEndTables._fields:
            table = getattr(self, name)
            if table is not None and table.is_floating_point() and table.dtype != torch.float32:
                if fresh is None:
                    fresh = dict(
                        zip(FrontEndTables._fields, build_tables(self.config), strict=False)
                    )
                setattr(self, name, fresh[name].to(table.device))
        return self

    def tables(self) -> FrontEndTables:
        return FrontEndTables(*(getattr(self, name) for name in FrontEndTables._fields))

    def forward(self, waveform: Tensor, augment: MaskParams | None = None) -> Tensor:
        """``waveform (..., time)`` float -> ``(..., n_features, frames)`` float32; ``augment``
        writes SpecAugment masks in the same pass (see :func:`emohrnet_fast.ops.log_mel`)."""
        return log_mel(waveform, self.config, tables=self.tables(), augment=augment)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"sample_rate={c.sample_rate}, n_fft={c.n_fft}, hop_length={c.hop_length}, "
            f"n_mels={c.n_mels}, n_mfcc={c.n_mfcc}, output={c.output!r}"
        )


class LogMel(FrontEnd):
    """Log-Mel spectrogram, ``(..., time)`` -> ``(..., n_mels, frames)``; default dB with a
    per-example ``top_db=80`` floor (MelSpectrogram + AmplitudeToDB)."""

    def __init__(self, config: FrontEndConfig | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        if self.config.n_mels is None or self.config.n_mfcc is not None:
            raise ValueError("LogMel needs n_mels set and n_mfcc=None (see Spectrogram, MFCC)")


class Spectrogram(FrontEnd):
    """Linear-frequency spectrogram, ``(..., time)`` -> ``(..., n_fft // 2 + 1, frames)``,
    in the config's ``output`` scale (dB by default; ``output='power'`` for torchaudio's
    ``Spectrogram``)."""

    def __init__(self, config: FrontEndConfig | None = None, **overrides) -> None:
        super().__init__(config, **{**overrides, "n_mels": None})
        if self.config.n_mfcc is not None:
            raise ValueError(
                "Spectrogram needs n_mfcc=None (for cepstra use MFCC, or FrontEnd(n_mels=None, "
                f"n_mfcc=...) for linear-frequency ones), got n_mfcc={self.config.n_mfcc}"
            )


class MFCC(FrontEnd):
    """MFCCs, ``(..., time)`` -> ``(..., n_mfcc, frames)``: DCT-II (ortho) of the dB Mel
    spectrogram, as ``torchaudio.transforms.MFCC(log_mels=False)`` (``output='log'`` gives
    ``log_mels=True``)."""

    def __init__(self, n_mfcc: int = 40, config: FrontEndConfig | None = None, **overrides) -> None:
        super().__init__(config, **{**overrides, "n_mfcc": n_mfcc})
        if self.config.n_mels is None:
            raise ValueError(
                "MFCC needs n_mels set (a DCT of linear bins is not an MFCC; use "
                "FrontEnd(n_mels=None, n_mfcc=...) for linear-frequency cepstra)"
            )


__all__ = ["MFCC", "FrontEnd", "LogMel", "Spectrogram"]
