"""Calibrated scores: temperature scaling and the expected calibration error.

A classifier trained with cross-entropy is usually over-confident on speakers it never heard:
its top softmax score says 0.9 where it is right 70 % of the time. Temperature scaling (Guo et
al., "On Calibration of Modern Neural Networks", ICML 2017) divides the logits by one scalar
``T`` fitted to minimise the negative log-likelihood on held-out data; the predicted class does
not change, only how sure the scores say it is. The figure of merit is the expected calibration
error (ECE): the gap between confidence and accuracy averaged over equal-width confidence bins.

``T`` must be fitted on utterances the model did not train on, and the ECE it achieves must be
measured on yet others. :func:`emohrnet_fast.cross_validate` does both from its folds'
held-out logits (cross-fitting: fold k's temperature is fitted on the other folds' test
speakers and scored on fold k's); :func:`calibrate` fits a model on a held-out set you name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from emohrnet_fast.data.corpus import Corpus

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017
# Searched range of T: beyond it the scores are all but one-hot or all but uniform, which
# means the held-out set is too small or the model is broken, not that T should go further.
TEMPERATURE_RANGE = (0.05, 20.0)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it does on the data it is scored on."""

    temperature: float  # logits are divided by it before the softmax
    ece_before: float  # expected calibration error at T = 1, in [0, 1]
    ece_after: float  # ... at the fitted T
    nll_before: float  # mean negative log-likelihood (nats) at T = 1
    nll_after: float  # ... at the fitted T
    utterances: int  # how many it is measured on


def _check(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] < 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits: expected a (N, num_classes >= 2) tensor, got {shape}")
    targets = torch.as_tensor(targets)
    if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"targets: expected ({logits.shape[0]},) class indices, got shape "
            f"{tuple(targets.shape)}"
        )
    if logits.shape[0] == 0:
        raise ValueError("logits: expected at least one example, got none")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets: expected integer class indices, got {targets.dtype}")
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError(
            f"targets: class indices must be in [0, {logits.shape[1]}), got "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    logits = logits.detach().double().cpu()
    if not torch.isfinite(logits).all():
        raise ValueError("logits: contain NaN or Inf")
    return logits, targets.long().cpu()


def expected_calibration_error(
    probabilities: Tensor, targets: Tensor, n_bins: int = ECE_BINS
) -> float:
    """ECE of ``(N, K)`` class probabilities against ``(N,)`` integer targets: the
    support-weighted mean of |accuracy - mean confidence| over ``n_bins`` equal-width bins of
    the top score (bins are ``(lo, hi]``; a score of 0 counts in the first). In [0, 1]."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: expected an integer >= 1")
    probabilities, targets = _check(probabilities, targets)
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).double()
    bins = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.bincount(bins, minlength=n_bins).double()
    gap = torch.bincount(bins, weights=correct - confidence, minlength=n_bins).abs()
    return float(gap.sum() / count.sum())


def negative_log_likelihood(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> float:
    """Mean cross-entropy (nats) of ``softmax(logits / temperature)`` against ``targets``."""
    logits, targets = _check(logits, targets)
    return float(nn.functional.cross_entropy(logits / temperature, targets))


def fit_temperature(logits: Tensor, targets: Tensor) -> float:
    """The ``T`` in :data:`TEMPERATURE_RANGE` minimising the mean NLL of
    ``softmax(logits / T)``. The NLL is convex in ``1 / T``, so a golden-section search over
    ``1 / T`` finds the optimum to 1e-6 relative without any optimiser state."""
    logits, targets = _check(logits, targets)

    def nll(inverse: float) -> float:
        return float(nn.functional.cross_entropy(logits * inverse, targets))

    lo, hi = 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    while hi - lo > 1e-6 * hi:
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return 1.0 / ((lo + hi) / 2.0)


def assess(logits: Tensor, targets: Tensor, temperature: float) -> Calibration:
    """What ``temperature`` does to ECE and NLL on ``logits`` / ``targets``."""
    logits, targets = _check(logits, targets)
    return Calibration(
        temperature=float(temperature),
        ece_before=expected_calibration_error(torch.softmax(logits, dim=1), targets),
        ece_after=expected_calibration_error(torch.softmax(logits / temperature, dim=1), targets),
        nll_before=negative_log_likelihood(logits, targets),
        nll_after=negative_log_likelihood(logits, targets, temperature),
        utterances=int(targets.numel()),
    )


def calibrate(
    model: nn.Module,
    dataset: Corpus,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    clip_seconds: float | None = None,
) -> Calibration:
    """Fit ``model.temperature`` on ``dataset`` and set it (what :class:`~emohrnet_fast.Predictor`
    and :func:`~emohrnet_fast.predict` divide the logits by; checkpoints save it).

    ``dataset`` must be held out from the model's training (other speakers); the returned
    figures are measured on that same set, so they flatter the fit: quote an ECE measured on
    a third set (as :func:`emohrnet_fast.cross_validate` does) as the calibrated figure.

    Args:
        model: a trained :class:`~emohrnet_fast.models.base.EmotionModel`.
        dataset: held-out utterances, waveforms loaded at the model's sample rate.
        batch_size, device, clip_seconds: as for :func:`emohrnet_fast.evaluate`.

    Returns:
        The :class:`Calibration` fitted and measured on ``dataset``.

    Raises:
        ValueError: as :func:`emohrnet_fast.evaluate` for the same ``dataset``.
    """
    from emohrnet_fast.checkpoint import emotion_model
    from emohrnet_fast.evaluate import dataset_logits, targets_for

    plain = emotion_model(model)
    _, targets = targets_for(plain, dataset)
    device = torch.device(device) if device is not None else next(plain.parameters()).device
    logits = dataset_logits(
        plain, dataset, batch_size=batch_size, device=device, clip_seconds=clip_seconds
    )
    result = assess(logits, targets, fit_temperature(logits, targets))
    plain.temperature = result.temperature
    return result
