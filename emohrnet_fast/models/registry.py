"""Named model presets: one table of dataclass configs, one ``create``."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.models.base import EmotionModel
from emohrnet_fast.models.centerloss_cnn import CenterLossCNN, CenterLossCNNConfig
from emohrnet_fast.models.emohrnet import (
    EMOHRNET_COMPACT,
    EMOHRNET_SMALL,
    EMOHRNET_W18,
    EMOHRNET_W32,
    EmoHRNet,
)

_PRESETS: dict[str, tuple[Callable[[Any, int], EmotionModel], Any]] = {}


def register(name: str, builder: Callable[[Any, int], EmotionModel], config: Any) -> None:
    """Add a preset; ``builder(config, num_classes)`` makes the model."""
    if name in _PRESETS:
        warnings.warn(f"model preset {name!r} registered twice; the later one wins", stacklevel=2)
    _PRESETS[name] = (builder, config)


def list_models() -> list[str]:
    """Names accepted by :func:`create`, sorted."""
    return sorted(_PRESETS)


def model_config(name: str) -> Any:
    """The config dataclass of preset ``name``."""
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _PRESETS[name][1]


def typed_fields(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Config fields of preset ``name`` from JSON values: lists become tuples and dicts the
    nested dataclasses (``StageConfig``, ``FrontEndConfig``) where the preset has them."""
    return _typed_like(model_config(name), data, name)


def _typed_like(template: Any, data: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(template)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"model {where!r} has no config field(s) {sorted(unknown)}")
    out = {}
    for key, value in data.items():
        current = getattr(template, key)
        if isinstance(value, dict) and dataclasses.is_dataclass(current):
            assert not isinstance(current, type)  # a preset holds config instances
            value = type(current)(**_typed_like(current, value, f"{where}.{key}"))
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def create(name: str, num_classes: int, **overrides: Any) -> EmotionModel:
    """Build preset ``name`` for ``num_classes`` classes; ``overrides`` replace config fields
    (an unknown field is an error). The model's ``default_frontend`` says which features it
    expects."""
    config = model_config(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: expected an integer >= 2")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(config)}
    if unknown:
        raise TypeError(f"model {name!r} has no config field(s) {sorted(unknown)}")
    builder = _PRESETS[name][0]
    return builder(dataclasses.replace(config, **overrides), num_classes)


register("emohrnet_small", EmoHRNet, EMOHRNET_SMALL)  # HRNet-W18-small-v1 widths: the default
register("emohrnet_compact", EmoHRNet, EMOHRNET_COMPACT)  # half widths: the bundled-model size
register("emohrnet_w18", EmoHRNet, EMOHRNET_W18)
register("emohrnet_w32", EmoHRNet, EMOHRNET_W32)
register(
    "centerloss_cnn_spec",
    CenterLossCNN,
    CenterLossCNNConfig(frontend=FrontEndConfig(n_mels=None)),  # 257-bin dB spectrogram
)
register(
    "centerloss_cnn_mfcc",
    CenterLossCNN,
    CenterLossCNNConfig(frontend=FrontEndConfig(n_mfcc=40)),  # 40 MFCCs of 128 Mel bands
)
