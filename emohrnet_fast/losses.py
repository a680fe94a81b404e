"""Losses beyond cross-entropy."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CenterLoss(nn.Module):
    """Center loss (Wen et al., ECCV 2016): pulls each embedding towards its class center.

    ``loss = mean_i 1/2 ||x_i - c_{y_i}||^2``. The centers are a buffer, not a parameter: the
    main optimizer never touches them. In training mode every call also moves the centers of
    the classes present towards their embeddings, with the paper's rule
    ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)`` (embeddings detached).

    Args:
        num_classes: number of classes (>= 2).
        dim: embedding size.
        alpha: center learning rate in (0, 1].
    """

    centers: Tensor

    def __init__(self, num_classes: int, dim: int, alpha: float = 0.5) -> None:
        super().__init__()
        if not _is_int(num_classes) or num_classes < 2:
            raise ValueError(f"CenterLoss num_classes={num_classes!r}: expected >= 2")
        if not _is_int(dim) or dim < 1:
            raise ValueError(f"CenterLoss dim={dim!r}: expected >= 1")
        if not (isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)) or not (
            0.0 < alpha <= 1.0
        ):
            raise ValueError(f"CenterLoss alpha={alpha!r}: expected a rate in (0, 1]")
        self.alpha: float = alpha
        self.register_buffer("centers", torch.zeros(num_classes, dim))

    def forward(self, embedding: Tensor, labels: Tensor) -> Tensor:
        """``embedding (B, dim)`` float, ``labels (B,)`` int64 in ``[0, num_classes)`` -> scalar.

        Inputs must be on the centers' device (move the loss with ``.to(device)``). The label
        range is checked in eager mode: on the CPU with a ``ValueError``; on CUDA with a
        device-side assertion (no host sync, so a bad label surfaces as a CUDA error at the
        next synchronisation); under ``torch.compile`` it is skipped.
        NaN or Inf in ``embedding`` propagate to the loss and, in training mode, to the centers
        of the classes present. An empty batch gives NaN (the mean over no examples, as
        ``F.cross_entropy``) and leaves the centers unchanged.
        """
        num_classes, dim = self.centers.shape
        for name, value in (("embedding", embedding), ("labels", labels)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
            if value.device != self.centers.device:
                raise ValueError(
                    f"{name} is on {value.device} but the centers are on "
                    f"{self.centers.device}; move the loss with .to(device)"
                )
        if not embedding.is_floating_point():
            raise TypeError(f"embedding: expected a floating-point tensor, got {embedding.dtype}")
        if embedding.dim() != 2 or embedding.shape[1] != dim:
            raise ValueError(f"embedding: expected (B, {dim}), got {tuple(embedding.shape)}")
        if labels.shape != embedding.shape[:1] or labels.dtype != torch.long:
            raise ValueError(
                f"labels: expected ({embedding.shape[0]},) int64, got "
                f"{tuple(labels.shape)} {labels.dtype}"
            )
        if labels.numel() and not torch.compiler.is_compiling():
            # Negative labels would otherwise index centers from the end, silently.
            if labels.is_cuda:  # checked on the device: a training step never waits on it
                torch._assert_async(((labels >= 0) & (labels < num_classes)).all())
            else:
                low, high = int(labels.min()), int(labels.max())
                if low < 0 or high >= num_classes:
                    raise ValueError(
                        f"labels: expected class indices in [0, {num_classes}), got [{low}, {high}]"
                    )
        centers = self.centers.to(embedding.dtype)[labels]
        loss = 0.5 * (embedding - centers).pow(2).sum(dim=1).mean()
        if self.training:
            self._update(embedding.detach().float(), labels)
        return loss

    @torch.no_grad()
    def _update(self, embedding: Tensor, labels: Tensor) -> None:
        num_classes = self.centers.shape[0]
        # index_add_ rather than bincount: bincount reads the largest label on the host.
        counts = embedding.new_zeros(num_classes).index_add_(
            0, labels, embedding.new_ones(labels.shape)
        )
        sums = torch.zeros_like(self.centers).index_add_(0, labels, embedding)
        # sum_i (c_j - x_i) = n_j c_j - sum_i x_i
        delta = (counts[:, None] * self.centers - sums) / (1.0 + counts[:, None])
        self.centers -= self.alpha * delta
