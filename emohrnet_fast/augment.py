"""SpecAugment (Park et al. 2019) as an ``nn.Module`` over ``emohrnet_fast.ops.spec_augment``."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor, nn

from emohrnet_fast.config import SpecAugmentConfig
from emohrnet_fast.ops._checks import check_device_supported
from emohrnet_fast.ops.spec_augment import MaskParams, spec_augment

_DEFAULT = SpecAugmentConfig()


class SpecAugment(nn.Module):
    """Frequency and time masking, independently per example, in training mode only.

    For each example: ``freq_masks`` ranges along the feature axis and ``time_masks`` along the
    frame axis; each width is uniform in ``[0, width]`` (integers), each start uniform over the
    positions where the range fits, as in the SpecAugment paper and torchaudio's
    ``iid_masks=True``. With probability ``1 - p`` an example is left unmasked. Widths larger
    than the axis are clamped to the axis. Channels of ``(B, C, F, T)`` features share their
    example's masks. Time warping is not implemented (no EmoHRNet setting we know of uses it).

    Defaults: :class:`~emohrnet_fast.config.SpecAugmentConfig` (two frequency masks of up to 27
    bands, two time masks of up to 10 % of the frames).

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
        freq_masks: int = _DEFAULT.freq_masks,
        freq_width: int = _DEFAULT.freq_width,
        time_masks: int = _DEFAULT.time_masks,
        time_width: int | float = _DEFAULT.time_width,
        mask_value: float | Literal["mean"] = _DEFAULT.mask_value,
        p: float = _DEFAULT.p,
    ) -> None:
        super().__init__()
        # The config validates every field; its messages name them.
        SpecAugmentConfig(freq_masks, freq_width, time_masks, time_width, mask_value, p)
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.mask_value = mask_value
        self.p = p

    @classmethod
    def from_config(cls, config: SpecAugmentConfig) -> SpecAugment:
        """The module for a :class:`~emohrnet_fast.config.SpecAugmentConfig`."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})

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
        for name, value in (("batch", batch), ("features", features), ("frames", frames)):
            # SymInt: sizes of features traced with dynamic shapes by torch.compile.
            if isinstance(value, bool) or not isinstance(value, int | torch.SymInt) or value < 0:
                raise ValueError(f"SpecAugment.draw {name}={value!r}: expected an integer >= 0")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
            )
        device = torch.device(device)

        def ranges(count: int, axis: int, max_width: int) -> Tensor:
            u = torch.rand(batch, count, 2, device=device, dtype=torch.float32, generator=generator)
            width = torch.floor(u[..., 0] * (max_width + 1))
            start = torch.floor(u[..., 1] * (axis - width + 1))
            return torch.stack([start, start + width], dim=-1).to(torch.int32)

        freq = ranges(self.freq_masks, features, min(self.freq_width, features))
        time = ranges(self.time_masks, frames, self.max_time_width(frames))
        if self.p < 1.0:
            skip = (
                torch.rand(batch, device=device, dtype=torch.float32, generator=generator) >= self.p
            )
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
            values = torch.full(
                (batch,), float(self.mask_value), device=device, dtype=torch.float32
            )
        return MaskParams(freq, time, values)

    def forward(self, features: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``features (B, [C,] F, T)`` float32 -> masked copy in training mode, ``features``
        itself in eval mode."""
        if not isinstance(features, Tensor):
            raise TypeError(
                f"SpecAugment: expected a features tensor, got {type(features).__name__}"
            )
        if not self.training or (self.freq_masks == 0 and self.time_masks == 0):
            return features
        if features.dim() < 3:
            raise ValueError(
                f"SpecAugment: expected (B, [C,] F, T) features, got {tuple(features.shape)}"
            )
        if features.dtype != torch.float32:
            raise TypeError(f"SpecAugment: expected float32 features, got {features.dtype}")
        check_device_supported("SpecAugment features", features)
        if features.numel() == 0:
            raise ValueError(
                f"SpecAugment: expected non-empty features, got shape {tuple(features.shape)}"
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
