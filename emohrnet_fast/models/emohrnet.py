"""EmoHRNet (Muppidi & Radfar, "EmoHRNet: High-Resolution Neural Network Based Speech Emotion
Recognition", arXiv 2510.06072): an HRNet on log-Mel spectrograms.

The paper's hyper-parameters are not available to us. The backbone follows the HRNet
image-classification networks (Wang et al. 2019; the layout and parameter names of timm's
``hrnet_w18_small`` / ``hrnet_w18`` / ``hrnet_w32``, so their weights load by name):

* stem: two 3x3 stride-2 convs (+ BN + ReLU), 64 channels (``stem_width``; 32 in compact);
* stage 1: bottleneck blocks; stages 2-4: 2, 3, 4 parallel branches, each branch halving both
  axes and doubling the channels; each stage is a sequence of modules, each module runs basic
  blocks per branch and ends with a fuse layer: for output branch i, contributions from
  higher-resolution branches come through chains of 3x3 stride-2 convs, those from lower ones
  through 1x1 conv + BN at their own resolution, then ``emohrnet_fast.ops.hr_fuse`` does the
  nearest upsampling to branch i's exact size, the sum and the ReLU in one kernel. Upsampling
  to a size (not by a power-of-two factor, as the image HRNet does) is what lets any frame
  count through: 401 frames need no padding;
* head: the HRNet classification head (bottleneck "increase" blocks per branch, stride-2 merges
  down to the lowest resolution, 1x1 conv to 2048 channels (1024 in compact), global average
  pooling), then our choice for the emotion classifier: one hidden layer of 256 units (128 in
  compact; ReLU, dropout 0.3; its
  activations are the model's ``embedding``) and a linear layer to the logits.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, cast

import torch
from torch import Tensor, nn

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.models.base import EmotionModel, ModelOutput, as_image, check_config_types
from emohrnet_fast.ops import hr_fuse, reference


@dataclass(frozen=True)
class StageConfig:
    """One HRNet stage."""

    modules: int  # HighResolutionModules in sequence
    blocks: tuple[int, ...]  # residual blocks per branch in each module
    channels: tuple[int, ...]  # width of each branch (len = number of branches)


@dataclass(frozen=True)
class EmoHRNetConfig:
    """Architecture of :class:`EmoHRNet`; the presets copy the HRNet image networks' widths."""

    stage1: StageConfig = StageConfig(1, (1,), (32,))  # bottleneck blocks, x4 expansion
    stage2: StageConfig = StageConfig(1, (2, 2), (16, 32))
    stage3: StageConfig = StageConfig(1, (2, 2, 2), (16, 32, 64))
    stage4: StageConfig = StageConfig(1, (2, 2, 2, 2), (16, 32, 64, 128))
    stem_width: int = 64  # channels of both stem convs
    head_channels: tuple[int, ...] = (32, 64, 128, 256)  # increase blocks (x4 expansion)
    num_features: int = 2048  # channels of the head's final 1x1 conv = pooled features
    hidden: int = 256  # units of the classifier's hidden layer (the embedding)
    dropout: float = 0.3  # before the last linear layer
    fuse: Literal["kernel", "reference"] = "kernel"  # hr_fuse kernel or the eager expression
    in_chans: int = 1  # feature channels
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)  # features it expects

    def __post_init__(self) -> None:
        if self.fuse not in ("kernel", "reference"):
            raise ValueError(f"EmoHRNetConfig.fuse={self.fuse!r}: expected 'kernel' or 'reference'")
        check_config_types(
            self,
            ints=("stem_width", "num_features", "hidden", "in_chans"),
            int_tuples=("head_channels",),
        )
        for name, want in (("stage1", 1), ("stage2", 2), ("stage3", 3), ("stage4", 4)):
            stage = getattr(self, name)
            if not isinstance(stage, StageConfig):
                raise ValueError(
                    f"EmoHRNetConfig.{name}={stage!r}: expected a StageConfig(modules, blocks, "
                    "channels)"
                )
            if len(stage.channels) != want or len(stage.blocks) != want or stage.modules < 1:
                raise ValueError(
                    f"EmoHRNetConfig.{name}={stage}: expected {want} branch(es) and >= 1 module"
                )
        if len(self.head_channels) != 4:
            raise ValueError(f"EmoHRNetConfig.head_channels={self.head_channels}: expected 4")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EmoHRNetConfig.dropout={self.dropout}: expected [0, 1)")


EMOHRNET_SMALL = EmoHRNetConfig()  # HRNet-W18-small-v1
EMOHRNET_W18 = EmoHRNetConfig(
    stage1=StageConfig(1, (4,), (64,)),
    stage2=StageConfig(1, (4, 4), (18, 36)),
    stage3=StageConfig(4, (4, 4, 4), (18, 36, 72)),
    stage4=StageConfig(3, (4, 4, 4, 4), (18, 36, 72, 144)),
)
# Half of W18-small's widths everywhere (2.9 M parameters, 5.8 MB in 16-bit): the size that fits
# the package's bundled model (issue: <= 10 MB) and trains ~3x faster on a CPU. Measured on
# EmoDB, LOSO, 30 epochs (CPU): UA 52.7 +- 9.2 %, WA 55.7 +- 7.9 % (README, Measured accuracy).
EMOHRNET_COMPACT = EmoHRNetConfig(
    stage1=StageConfig(1, (1,), (16,)),
    stage2=StageConfig(1, (2, 2), (8, 16)),
    stage3=StageConfig(1, (2, 2, 2), (8, 16, 32)),
    stage4=StageConfig(1, (2, 2, 2, 2), (8, 16, 32, 64)),
    stem_width=32,
    head_channels=(16, 32, 64, 128),
    num_features=1024,
    hidden=128,
)
EMOHRNET_W32 = EmoHRNetConfig(
    stage1=StageConfig(1, (4,), (64,)),
    stage2=StageConfig(1, (4, 4), (32, 64)),
    stage3=StageConfig(4, (4, 4, 4), (32, 64, 128)),
    stage4=StageConfig(3, (4, 4, 4, 4), (32, 64, 128, 256)),
)


def _conv_bn(
    in_chans: int,
    out_chans: int,
    kernel: int,
    stride: int = 1,
    bias: bool = False,
    relu: bool = False,
) -> nn.Sequential:
    layers = [
        nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, bias=bias),
        nn.BatchNorm2d(out_chans),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet basic block)."""

    expansion = 1

    def __init__(self, in_chans: int, chans: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, chans, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chans)
        self.conv2 = nn.Conv2d(chans, chans, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(chans)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _conv_bn(in_chans, chans, 1) if in_chans != chans else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) with a residual connection (ResNet bottleneck)."""

    expansion = 4

    def __init__(self, in_chans: int, chans: int) -> None:
        super().__init__()
        out_chans = chans * self.expansion
        self.conv1 = nn.Conv2d(in_chans, chans, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chans)
        self.conv2 = nn.Conv2d(chans, chans, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(chans)
        self.conv3 = nn.Conv2d(chans, out_chans, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.act = nn.ReLU(inplace=True)
        self.downsample = _conv_bn(in_chans, out_chans, 1) if in_chans != out_chans else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        return self.act(self.bn3(self.conv3(y)) + shortcut)


def _blocks(
    block: type[BasicBlock | Bottleneck], in_chans: int, chans: int, count: int
) -> nn.Sequential:
    layers = [block(in_chans, chans)]
    layers += [block(chans * block.expansion, chans) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Basic blocks per branch, then the fuse layer (one ``hr_fuse`` per output branch)."""

    def __init__(self, channels: tuple[int, ...], blocks: tuple[int, ...], fuse: str) -> None:
        super().__init__()
        self.fuse = fuse
        self.branches = nn.ModuleList(
            _blocks(BasicBlock, c, c, n) for c, n in zip(channels, blocks, strict=True)
        )
        fuse_layers = []
        for i, out_chans in enumerate(channels):
            row: list[nn.Module] = []
            for j, in_chans in enumerate(channels):
                if j > i:  # lower resolution: 1x1 conv + BN here, upsampled inside hr_fuse
                    row.append(_conv_bn(in_chans, out_chans, 1))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution: i - j stride-2 3x3 convs, ReLU between them
                    steps = [
                        _conv_bn(in_chans, in_chans, 3, 2, relu=True) for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_bn(in_chans, out_chans, 3, 2))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        # (cast: mypy takes ops.hr_fuse, inside this import cycle, for its submodule)
        fuse_op = (
            cast(Callable[[list[Tensor], list[Tensor]], Tensor], hr_fuse)
            if self.fuse == "kernel"
            else partial(reference.hr_fuse, check=False)
        )
        out = []
        for i, layers in enumerate(self.fuse_layers):
            row = cast(nn.ModuleList, layers)
            same_res = [row[j](xs[j]) for j in range(i + 1)]
            low_res = [row[j](xs[j]) for j in range(i + 1, len(xs))]
            out.append(fuse_op(same_res, low_res))
        return out


class EmoHRNet(EmotionModel):
    """``features (B, [1,] n_mels, frames)`` -> :class:`ModelOutput` (logits, a ``hidden``-d
    embedding: 256, 128 in compact; no reconstruction). See the module docstring for the
    architecture."""

    min_size = 32  # the lowest branch is 32x smaller than the input on both axes
    uses_spec_augment = True  # the paper trains with SpecAugment

    def __init__(self, config: EmoHRNetConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        c = config
        self.conv1 = nn.Conv2d(c.in_chans, c.stem_width, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c.stem_width)
        self.conv2 = nn.Conv2d(c.stem_width, c.stem_width, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c.stem_width)
        self.act = nn.ReLU(inplace=True)
        self.layer1 = _blocks(Bottleneck, c.stem_width, c.stage1.channels[0], c.stage1.blocks[0])

        previous: tuple[int, ...] = (c.stage1.channels[0] * Bottleneck.expansion,)
        for index, stage in ((1, c.stage2), (2, c.stage3), (3, c.stage4)):
            setattr(self, f"transition{index}", self._transition(previous, stage.channels))
            modules = [
                HighResolutionModule(stage.channels, stage.blocks, c.fuse)
                for _ in range(stage.modules)
            ]
            setattr(self, f"stage{index + 1}", nn.Sequential(*modules))
            previous = stage.channels

        head = [h * Bottleneck.expansion for h in c.head_channels]
        self.incre_modules = nn.ModuleList(
            _blocks(Bottleneck, chans, h, 1)
            for chans, h in zip(previous, c.head_channels, strict=True)
        )
        self.downsamp_modules = nn.ModuleList(
            _conv_bn(a, b, 3, 2, bias=True, relu=True) for a, b in itertools.pairwise(head)
        )
        self.final_layer = _conv_bn(head[-1], c.num_features, 1, bias=True, relu=True)
        self.hidden = nn.Linear(c.num_features, c.hidden)
        self.embedding_dim = c.hidden
        self.head_drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.hidden, num_classes)
        self._init_weights()

    @staticmethod
    def _transition(previous: tuple[int, ...], current: tuple[int, ...]) -> nn.ModuleList:
        layers = []
        for i, chans in enumerate(current):
            if i < len(previous):
                same = previous[i] == chans
                layers.append(nn.Identity() if same else _conv_bn(previous[i], chans, 3, relu=True))
            else:  # a new, lower branch: stride-2 convs from the lowest existing one
                steps = [
                    _conv_bn(previous[-1], previous[-1], 3, 2, relu=True)
                    for _ in range(i - len(previous))
                ]
                steps.append(_conv_bn(previous[-1], chans, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, features: Tensor) -> Tensor:
        """Pooled pre-logit features ``(B, num_features)`` (timm's ``forward_head(...,
        pre_logits=True)``)."""
        x = as_image(features, self.config.in_chans, self.min_size, "EmoHRNet", self.conv1.weight)
        x = self.input_norm(x)
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for index in (1, 2, 3):
            transition = getattr(self, f"transition{index}")
            xs = [t(xs[i]) if i < len(xs) else t(xs[-1]) for i, t in enumerate(transition)]
            xs = getattr(self, f"stage{index + 1}")(xs)
        y = self.incre_modules[0](xs[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](xs[i + 1]) + down(y)
        return self.final_layer(y).mean(dim=(-2, -1))

    def forward_head(self, pooled: Tensor) -> tuple[Tensor, Tensor]:
        embedding = torch.relu(self.hidden(pooled))
        return self.classifier(self.head_drop(embedding)), embedding

    def forward(self, features: Tensor) -> ModelOutput:
        logits, embedding = self.forward_head(self.forward_features(features))
        return ModelOutput(logits, embedding, None)
