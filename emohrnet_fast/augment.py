"""SpecAugment (Park et al. 2019) as an ``nn.Module`` over ``emohrnet_fast.ops.spec_augment``."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from emohrnet_fast.ops.spec_augment import MaskParams, spec_augment


class SpecAugment(nn.Module):
    """Frequency and time masking, independently per example, in training mode only.

    For each example: ``freq_masks`` ranges along the feature axis and ``time_masks`` along the
    frame axis; each width is uniform in ``[0, width]`` (integers), each start uniform over the
    positions where the range fits, as in the SpecAugment paper and torchaudio's
    ``iid_masks=True``. With probability ``1 - p`` an example is left unmasked. Widths larger
    than the axis are clamped to the axis. Channels of ``(B, C, F, T)`` features share their
    example's masks. Time warping is not implemented (no EmoHRNet setting we know of uses it).

    Defaults: two frequency masks of up to 27 bands (the paper's LibriSpeech-double policy) and
    two time masks of up to 10 % of the frames (our choice for 4-s emotion clips: 40 frames at
    a 10-ms hop).

    Args:
        freq_masks: masks per example along the feature axis (>= 0).
        freq_width: largest frequency-mask width, in bands (>= 0).
        time_masks: masks per example along the frame axis (>= 0).
        time_width: largest time-mask width: frames (int >= 0) or a fraction of T (float in
            [0, 1]).
        mask_value: fill value, or ``"mean"``: each example's mean feature value (a constant
            for autograd).
        p: probability that an example is masked at all.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int | float = 0.1,
        mask_value: float | Literal["mean"] = 0.0,
        p: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"SpecAugment {name}={value!r}: expected an integer >= 0")
        if isinstance(time_width, bool) or not isinstance(time_width, int | float):
            raise ValueError(
                f"SpecAugment time_width={time_width!r}: expected frames or a fraction"
            )
        if (isinstance(time_width, int) and time_width < 0) or (
            isinstance(time_width, float) and not 0.0 <= time_width <= 1.0
        ):
            raise ValueError(
                f"SpecAugment time_width={time_width!r}: expected an integer >= 0 (frames) or "
                "a fraction in [0, 1]"
            )
        if mask_value != "mean" and not (
            isinstance(mask_value, int | float) and math.isfinite(mask_value)
        ):
            raise ValueError(
                f"SpecAugment mask_value={mask_value!r}: expected a finite number or 'mean'"
            )
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"SpecAugment p={p!r}: expected a probability in [0, 1]")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.mask_value = mask_value
        self.p = p

    def max_time_width(self, frames: int) -> int:
        width = self.time_width
        width = int(width * frames) if isinstance(width, float) else width
        return min(width, frames)

    def draw(
        self,
        batch: int,
        features: int,
        frames: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        features_for_mean: Tensor | None = None,
    ) -> MaskParams:
        """Draw the masks of a ``(batch, [C,] features, frames)`` batch on ``device`` with
        torch's generator (or ``generator``); ``mask_value="mean"`` needs the features."""
        device = torch.device(device)

        def ranges(count: int, axis: int, max_width: int) -> Tensor:
            u = torch.rand(batch, count, 2, device=device, generator=generator)
            width = torch.floor(u[..., 0] * (max_width + 1))
            start = torch.floor(u[..., 1] * (axis - width + 1))
            return torch.stack([start, start + width], dim=-1).to(torch.int32)

        freq = ranges(self.freq_masks, features, min(self.freq_width, features))
        time = ranges(self.time_masks, frames, self.max_time_width(frames))
        if self.p < 1.0:
            skip = torch.rand(batch, device=device, generator=generator) >= self.p
            freq = freq.masked_fill(skip[:, None, None], 0)
            time = time.masked_fill(skip[:, None, None], 0)
        if self.mask_value == "mean":
            if features_for_mean is None:
                raise ValueError(
                    "SpecAugment(mask_value='mean') needs the features to draw its fill values; "
                    "call the module on them (log_mel(..., augment=...) needs a numeric value)"
                )
            values = features_for_mean.detach().reshape(batch, -1).mean(dim=1).float()
        else:
            values = torch.full((batch,), float(self.mask_value), device=device)
        return MaskParams(freq, time, values)

    def forward(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``features (B, [C,] F, T)`` float32 -> masked copy in training mode, ``features``
        itself in eval mode."""
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return features
        if features.dim() < 3:
            raise ValueError(
                f"SpecAugment: expected (B, [C,] F, T) features, got {tuple(features.shape)}"
            )
        masks = self.draw(
            features.shape[0],
            features.shape[-2],
            features.shape[-1],
            features.device,
            generator,
            features_for_mean=features,
        )
        return spec_augment(features, masks)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}, "
            f"mask_value={self.mask_value!r}, p={self.p}"
        )


__all__ = ["SpecAugment"]
