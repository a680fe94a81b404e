"""emohrnet_fast: speech emotion recognition on fused C++/CUDA kernels.

Public API (see README.md): :class:`FrontEndConfig`, :mod:`~emohrnet_fast.features`,
:mod:`~emohrnet_fast.augment`, :mod:`~emohrnet_fast.models`, :mod:`~emohrnet_fast.losses`,
:mod:`~emohrnet_fast.ops`, :mod:`~emohrnet_fast.audio`, :mod:`~emohrnet_fast.data`,
:class:`TrainConfig` / :func:`train` / :func:`evaluate` / :class:`Report`,
:func:`cross_validate` / :func:`ensemble_studies`, :func:`calibrate` / :class:`Calibration`,
:class:`Predictor` / :class:`EnsemblePredictor` / :func:`predict` / :func:`predict_timeline` /
:class:`Timeline`, :func:`load_model`, :func:`export_onnx` and :func:`info`.
"""

from emohrnet_fast import audio, augment, data, features, losses, models, ops
from emohrnet_fast._info import info
from emohrnet_fast.calibration import Calibration, calibrate
from emohrnet_fast.checkpoint import load_model
from emohrnet_fast.config import FrontEndConfig, SpecAugmentConfig, TrainConfig
from emohrnet_fast.crossval import CVResult, cross_validate, ensemble_studies
from emohrnet_fast.ensemble import EnsemblePredictor
from emohrnet_fast.evaluate import Report, evaluate
from emohrnet_fast.infer import Predictor, Timeline, predict, predict_timeline
from emohrnet_fast.onnx_export import export_onnx
from emohrnet_fast.train import TrainingDiverged, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "CVResult",
    "Calibration",
    "EnsemblePredictor",
    "FrontEndConfig",
    "Predictor",
    "Report",
    "SpecAugmentConfig",
    "Timeline",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "__version__",
    "audio",
    "augment",
    "calibrate",
    "cross_validate",
    "data",
    "ensemble_studies",
    "evaluate",
    "export_onnx",
    "features",
    "info",
    "load_model",
    "losses",
    "models",
    "ops",
    "predict",
    "predict_timeline",
    "train",
]
