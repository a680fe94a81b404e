"""Custom ops over the compiled core (CPU + CUDA) and their pure-PyTorch references."""

from emohrnet_fast.ops import reference
from emohrnet_fast.ops.hr_fuse import hr_fuse
from emohrnet_fast.ops.log_mel import log_mel
from emohrnet_fast.ops.mel import FrontEndTables
from emohrnet_fast.ops.spec_augment import MaskParams, spec_augment, spec_augment_

__all__ = [
    "FrontEndTables",
    "MaskParams",
    "hr_fuse",
    "log_mel",
    "reference",
    "spec_augment",
    "spec_augment_",
]
