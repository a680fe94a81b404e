"""Models: EmoHRNet and the center-loss CNN with reconstruction, behind one registry."""

from emohrnet_fast.models.base import ModelOutput
from emohrnet_fast.models.centerloss_cnn import CenterLossCNN, CenterLossCNNConfig
from emohrnet_fast.models.emohrnet import EmoHRNet, EmoHRNetConfig, StageConfig
from emohrnet_fast.models.registry import create, list_models, model_config, register

__all__ = [
    "CenterLossCNN",
    "CenterLossCNNConfig",
    "EmoHRNet",
    "EmoHRNetConfig",
    "ModelOutput",
    "StageConfig",
    "create",
    "list_models",
    "model_config",
    "register",
]
