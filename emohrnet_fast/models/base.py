"""What every model shares: its output type and input checks."""

from __future__ import annotations

import copy
import itertools
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class ModelOutput(NamedTuple):
    """What ``model(features)`` returns."""

    logits: Tensor  # (B, num_classes)
    embedding: Tensor  # (B, embedding_dim): the representation the classifier reads
    reconstruction: Tensor | None  # (B, 1, F, T): the input after input_norm; None: no decoder


class InputNorm(nn.Module):
    """``(x - mean) / std`` with scalar statistics of the training features (set by
    :func:`emohrnet_fast.train`; identity until then). Buffers, so checkpoints carry them and
    inference normalises exactly as training did."""

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))

    def forward(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={float(self.mean):.4g}, std={float(self.std):.4g}"


ModuleT = TypeVar("ModuleT", bound=nn.Module)


class EmotionModel(nn.Module):
    """Base of every model: its config, class count, the features it expects
    (``default_frontend``, so training and inference compute the same ones), their
    normalisation (``input_norm``), once trained the class names (``labels``) and, once
    calibrated, the softmax ``temperature``."""

    uses_center_loss = False  # training adds the center loss on ``embedding`` when True
    embedding_dim: int  # width of ``embedding``; each model sets it
    uses_spec_augment = False  # TrainConfig(spec_augment="auto") masks its features when True

    def __init__(self, config: Any, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: expected >= 2")
        self.config = config
        self.num_classes = num_classes
        self.default_frontend = config.frontend
        self.labels: tuple[str, ...] | None = None  # class i is labels[i]; set by training
        # Scores are softmax(logits / temperature); 1 until emohrnet_fast.calibrate fits it.
        self.temperature: float = 1.0
        # True: trained on speaker-normalised features (emohrnet_fast.speaker_norm), so it
        # expects the statistics of the speaker it hears (Predictor.adapt).
        self.speaker_norm: bool = False
        self.input_norm = InputNorm()

    def classify(self, features: Tensor) -> Tensor:
        """``(B, num_classes)`` logits only: ``self(features).logits``, minus any work the
        logits do not need (a model with a decoder overrides it to skip that)."""
        return self(features).logits

    def embedding(self, features: Tensor) -> Tensor:
        """``(B, embedding_dim)``: ``self(features).embedding``, the representation the
        classifier reads, minus any work it does not need (the decoder)."""
        return self(features).embedding


def fold_batchnorm(model: ModuleT) -> ModuleT:
    """An eval-mode copy of ``model`` in which every ``BatchNorm2d`` registered right after a
    ``Conv2d`` in the same parent (our blocks' ``conv1, bn1``, ``Sequential(conv, bn, ...)``
    convention: each such BN normalises that conv's output, and nothing else reads the conv's
    output) is folded into the conv's weight and bias and replaced by ``nn.Identity``.

    Same outputs up to float rounding, one kernel less per pair: at inference on a GPU,
    EmoHRNet-small's 91 BatchNorm kernels were 3.5 of its 12.8 ms at B=256 (H200,
    2026-12-04). ``model`` itself is not changed; the copy's weights are new tensors.
    """
    folded = copy.deepcopy(model).eval()
    for parent in list(folded.modules()):
        names = list(parent._modules)
        for conv_name, bn_name in itertools.pairwise(names):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            if (
                type(conv) is nn.Conv2d
                and type(bn) is nn.BatchNorm2d
                and bn.track_running_stats
                and bn.num_features == conv.out_channels
            ):
                parent._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                parent._modules[bn_name] = nn.Identity()
    return folded


def check_config_types(config: Any, ints: tuple[str, ...], int_tuples: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the field unless ``config``'s ``ints`` are integers >= 1, its
    ``int_tuples`` non-empty tuples of them, and its ``frontend`` a ``FrontEndConfig`` (else
    the layers fail later with errors that name no field)."""
    from emohrnet_fast.config import FrontEndConfig

    def is_positive_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    name = type(config).__name__
    for field in ints:
        value = getattr(config, field)
        if not is_positive_int(value):
            raise ValueError(f"{name}.{field}={value!r}: expected an integer >= 1")
    for field in int_tuples:
        value = getattr(config, field)
        if not (isinstance(value, tuple | list) and value and all(map(is_positive_int, value))):
            raise ValueError(f"{name}.{field}={value!r}: expected a tuple of integers >= 1")
    if not isinstance(config.frontend, FrontEndConfig):
        raise ValueError(
            f"{name}.frontend={config.frontend!r}: expected a FrontEndConfig "
            "(emohrnet_fast.FrontEndConfig(...))"
        )


def as_image(
    features: Tensor, in_chans: int, min_size: int, model: str, weight: Tensor | None = None
) -> Tensor:
    """``(B, F, T)`` or ``(B, in_chans, F, T)`` float features -> ``(B, in_chans, F, T)``, with
    errors that name what is wrong. ``weight`` (the first layer's) gives the device and dtype
    the features must have (any dtype under autocast)."""
    if not isinstance(features, Tensor):
        raise TypeError(f"{model}: expected a features tensor, got {type(features).__name__}")
    if not features.is_floating_point():
        raise TypeError(f"{model}: expected floating-point features, got {features.dtype}")
    if weight is not None:
        if features.device != weight.device:
            raise ValueError(
                f"{model}: features are on {features.device} but the model is on "
                f"{weight.device}; move one of them with .to(device)"
            )
        if features.dtype != weight.dtype and not torch.is_autocast_enabled(features.device.type):
            raise TypeError(
                f"{model}: features are {features.dtype} but the model's weights are "
                f"{weight.dtype}; convert one of them (e.g. features.to({weight.dtype}))"
            )
    if features.dim() == 3 and in_chans == 1:
        features = features.unsqueeze(1)
    if features.dim() != 4:
        raise ValueError(
            f"{model}: expected features (B, F, T) or (B, {in_chans}, F, T), got shape "
            f"{tuple(features.shape)}"
        )
    if features.shape[1] != in_chans:
        raise ValueError(
            f"{model}: expected {in_chans} input channel(s), got {features.shape[1]} "
            f"(shape {tuple(features.shape)})"
        )
    height, width = features.shape[-2:]
    if height < min_size or width < min_size:
        raise ValueError(
            f"{model}: features of {height} bins x {width} frames are too small; the network "
            f"downsamples by {min_size}, so both axes need at least {min_size}"
        )
    return features
