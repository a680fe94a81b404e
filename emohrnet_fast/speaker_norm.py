"""Speaker normalisation: each speaker's features standardised per band with that speaker's
own mean and standard deviation, the usual step of speaker-independent emotion recognition
(it removes a voice's timbre and level, which differ more between speakers than between
one speaker's emotions).

A model trained so (``TrainConfig(speaker_norm=True)``) expects, at inference, the statistics
of the speaker it listens to, taken from that speaker's unlabelled audio:
:meth:`emohrnet_fast.Predictor.adapt` and :func:`emohrnet_fast.evaluate` (per speaker of the
dataset) provide them. The normalised features are written in the scale of the model's
``input_norm`` (the training set's global statistics), so ``input_norm`` turns them into the
per-speaker z-scores and the model itself is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emohrnet_fast.models.base import InputNorm

# Floor of a band's standard deviation (front-end units, dB or MFCC): a constant band (a
# speaker with one silent clip) must not divide by zero.
MIN_STD = 1e-3


@dataclass(frozen=True)
class SpeakerStats:
    """One speaker's (or several, row by row) per-band feature statistics."""

    mean: Tensor  # (n_features,) or (speakers, n_features), front-end units
    std: Tensor  # same shape, >= MIN_STD

    @classmethod
    def from_moments(cls, moments: Tensor) -> SpeakerStats:
        """From ``band_moments`` sums ``(3, ..., n_features)``: sum, sum of squares, frames."""
        frames = moments[2].clamp(min=1.0)
        mean = moments[0] / frames
        variance = (moments[1] / frames - mean.square()).clamp(min=0.0)
        return cls(mean.float(), variance.sqrt().clamp(min=MIN_STD).float())


def band_moments(features: Tensor, groups: Tensor | None = None, count: int = 1) -> Tensor:
    """Per-group, per-band sums of ``features`` ``(clips, n_features, frames)``: a float64
    ``(3, count, n_features)`` tensor (sum, sum of squares, frame count), to add up over
    batches (and ranks) before :meth:`SpeakerStats.from_moments`. ``groups``: ``(clips,)``
    group index of each clip in ``[0, count)``; ``None``: all in group 0."""
    features = features.double()
    if groups is None:
        groups = torch.zeros(features.shape[0], dtype=torch.int64, device=features.device)
    out = torch.zeros(3, count, features.shape[1], dtype=torch.float64, device=features.device)
    out[0].index_add_(0, groups, features.sum(2))
    out[1].index_add_(0, groups, features.square().sum(2))
    frames = torch.full_like(features[:, :, 0], features.shape[2])
    out[2].index_add_(0, groups, frames)
    return out


def speaker_scale(features: Tensor, stats: SpeakerStats, input_norm: InputNorm) -> Tensor:
    """``features`` ``(clips, n_features, frames)`` standardised with ``stats`` (one row for
    all clips, or one row per clip) and written in ``input_norm``'s scale, so that
    ``input_norm(result) == (features - stats.mean) / stats.std`` band by band."""
    z = (features - stats.mean[..., None]) / stats.std[..., None]
    return z * input_norm.std + input_norm.mean
