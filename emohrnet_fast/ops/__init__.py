"""Custom ops over the compiled core (CPU + CUDA) and their pure-PyTorch references."""

from emohrnet_fast.ops import reference
from emohrnet_fast.ops.hr_fuse import hr_fuse
from emohrnet_fast.ops.log_mel import log_mel
from emohrnet_fast.ops.mel import FrontEndTables

__all__ = ["FrontEndTables", "hr_fuse", "log_mel", "reference"]
