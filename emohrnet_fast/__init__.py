"""emohrnet_fast: speech emotion recognition on fused C++/CUDA kernels.

Public API (see README.md): :class:`FrontEndConfig`, :mod:`~emohrnet_fast.features`,
:mod:`~emohrnet_fast.augment`, :mod:`~emohrnet_fast.models`, :mod:`~emohrnet_fast.losses`,
:mod:`~emohrnet_fast.ops`, :mod:`~emohrnet_fast.audio`, :mod:`~emohrnet_fast.data`,
:class:`Report` and :func:`info`.
"""

from emohrnet_fast import audio, augment, data, features, losses, models, ops
from emohrnet_fast._info import info
from emohrnet_fast.config import FrontEndConfig
from emohrnet_fast.evaluate import Report

__version__ = "0.1.0"

__all__ = [
    "FrontEndConfig",
    "Report",
    "__version__",
    "audio",
    "augment",
    "data",
    "features",
    "info",
    "losses",
    "models",
    "ops",
]
