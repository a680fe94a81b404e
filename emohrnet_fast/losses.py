"""Losses beyond cross-entropy."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
        if num_classes < 2:
            raise ValueError(f"CenterLoss num_classes={num_classes}: expected >= 2")
        if dim < 1:
            raise ValueError(f"CenterLoss dim={dim}: expected >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"CenterLoss alpha={alpha}: expected a rate in (0, 1]")
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, dim))

    def forward(self, embedding: Tensor, labels: Tensor) -> Tensor:
        """``embedding (B, dim)`` float, ``labels (B,)`` int64 in ``[0, num_classes)`` -> scalar."""
        dim = self.centers.shape[1]
        if embedding.dim() != 2 or embedding.shape[1] != dim:
            raise ValueError(f"embedding: expected (B, {dim}), got {tuple(embedding.shape)}")
        if labels.shape != embedding.shape[:1] or labels.dtype != torch.long:
            raise ValueError(
                f"labels: expected ({embedding.shape[0]},) int64, got "
                f"{tuple(labels.shape)} {labels.dtype}"
            )
        centers = self.centers.to(embedding.dtype)[labels]
        loss = 0.5 * (embedding - centers).pow(2).sum(dim=1).mean()
        if self.training:
            self._update(embedding.detach().float(), labels)
        return loss

    @torch.no_grad()
    def _update(self, embedding: Tensor, labels: Tensor) -> None:
        num_classes = self.centers.shape[0]
        counts = torch.bincount(labels, minlength=num_classes).to(embedding.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, labels, embedding)
        # sum_i (c_j - x_i) = n_j c_j - sum_i x_i
        delta = (counts[:, None] * self.centers - sums) / (1.0 + counts[:, None])
        self.centers -= self.alpha * delta
