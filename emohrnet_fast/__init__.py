"""emohrnet_fast: speech emotion recognition on fused C++/CUDA kernels.

Public API (see README.md): :class:`FrontEndConfig`, :mod:`emohrnet_fast.features`,
:mod:`emohrnet_fast.augment`, :mod:`emohrnet_fast.ops` and :func:`info`.
"""

from emohrnet_fast import augment, features, ops
from emohrnet_fast._info import info
from emohrnet_fast.config import FrontEndConfig

__version__ = "0.1.0"

__all__ = ["FrontEndConfig", "__version__", "augment", "features", "info", "ops"]
