"""Center-loss CNN with reconstruction (Tripathi, Ramesh, Kumar, Singh, Yenigalla, "Learning
Discriminative Features using Center Loss and Reconstruction as Regularizer for Speech Emotion
Recognition", arXiv 1906.08873).

The paper's full text is not available to us; the choices below follow its abstract (a compact
CNN on spectrogram or MFCC input, softmax + center loss on the embedding, a decoder that
reconstructs the input as a regulariser) and are ours where it is silent:

* encoder: 4 blocks of 3x3 conv + BatchNorm + ReLU + 2x2 max-pool, widths (32, 64, 128, 128);
  global average pooling; a linear layer to a 128-d embedding (the center-loss space);
* classifier: dropout 0.3 + linear, on the embedding;
* decoder: mirrors the encoder with 2x2 stride-2 transposed convolutions from its last feature
  map back to the input size (odd sizes restored exactly), BatchNorm + ReLU between layers.

The loss (cross-entropy + lambda_c center loss + lambda_r MSE reconstruction) is assembled by
training; :class:`emohrnet_fast.losses.CenterLoss` holds the centers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from torch import Tensor, nn

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.models.base import EmotionModel, ModelOutput, as_image, check_config_types


@dataclass(frozen=True)
class CenterLossCNNConfig:
    """Architecture of :class:`CenterLossCNN`."""

    channels: tuple[int, ...] = (32, 64, 128, 128)  # conv block widths; each halves both axes
    embedding_dim: int = 128  # size of the center-loss embedding
    dropout: float = 0.3  # before the classifier
    reconstruction: bool = True  # build the decoder (the paper's regulariser)
    in_chans: int = 1  # feature channels
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)  # features it expects

    def __post_init__(self) -> None:
        check_config_types(self, ints=("embedding_dim", "in_chans"), int_tuples=("channels",))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"CenterLossCNNConfig.dropout={self.dropout}: expected [0, 1)")


def _conv_block(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


class CenterLossCNN(EmotionModel):
    """``features (B, [1,] F, T)`` -> :class:`ModelOutput` (logits, 128-d embedding,
    reconstruction of the input or None)."""

    uses_center_loss = True

    def __init__(self, config: CenterLossCNNConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        widths = (config.in_chans, *config.channels)
        self.encoder = nn.ModuleList(_conv_block(a, b) for a, b in itertools.pairwise(widths))
        self.pool = nn.MaxPool2d(2)
        self.embed = nn.Linear(config.channels[-1], config.embedding_dim)
        self.embedding_dim = config.embedding_dim
        self.head_drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embedding_dim, num_classes)
        self.decoder: nn.ModuleList | None = None
        if config.reconstruction:
            rev = widths[::-1]
            self.decoder = nn.ModuleList(
                nn.ConvTranspose2d(a, b, kernel_size=2, stride=2)
                for a, b in itertools.pairwise(rev)
            )
            self.decoder_norms = nn.ModuleList(
                nn.Sequential(nn.BatchNorm2d(b), nn.ReLU(inplace=True)) for b in rev[1:-1]
            )
        self.min_size = 2 ** len(config.channels)

    def forward_features(self, features: Tensor) -> tuple[Tensor, list[tuple[int, int]]]:
        """Last encoder feature map ``(B, C, F / 16, T / 16)`` and the size before each pool."""
        first_conv = next(self.encoder.parameters())  # the device and dtype features must have
        x = as_image(features, self.config.in_chans, self.min_size, "CenterLossCNN", first_conv)
        x = self.input_norm(x)
        sizes = []
        for block in self.encoder:
            x = block(x)
            sizes.append((x.shape[-2], x.shape[-1]))
            x = self.pool(x)
        return x, sizes

    def forward_head(self, feature_map: Tensor) -> tuple[Tensor, Tensor]:
        embedding = self.embed(feature_map.mean(dim=(-2, -1)))
        return self.classifier(self.head_drop(embedding)), embedding

    def reconstruct(self, feature_map: Tensor, sizes: list[tuple[int, int]]) -> Tensor:
        if self.decoder is None:
            raise RuntimeError("reconstruct(): this model has no decoder (reconstruction=False)")
        x = feature_map
        for i, (deconv, size) in enumerate(zip(self.decoder, reversed(sizes), strict=True)):
            x = deconv(x, output_size=size)  # restores the odd sizes the pools floored away
            if i < len(self.decoder_norms):
                x = self.decoder_norms[i](x)
        return x

    def classify(self, features: Tensor) -> Tensor:
        """Logits without running the decoder: the same operations as ``forward``'s logits."""
        feature_map, _ = self.forward_features(features)
        return self.forward_head(feature_map)[0]

    def embedding(self, features: Tensor) -> Tensor:
        """The embedding without running the decoder."""
        feature_map, _ = self.forward_features(features)
        return self.forward_head(feature_map)[1]

    def forward(self, features: Tensor) -> ModelOutput:
        feature_map, sizes = self.forward_features(features)
        logits, embedding = self.forward_head(feature_map)
        recon = self.reconstruct(feature_map, sizes) if self.decoder is not None else None
        return ModelOutput(logits, embedding, recon)
