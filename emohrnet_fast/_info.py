"""What was built and what can run: ``emohrnet_fast.info()``."""

from __future__ import annotations

import platform

import torch

from emohrnet_fast._extension import _C

KERNELS = ("log_mel", "spec_augment", "hr_fuse")


def cuda_usable() -> bool:
    """Whether the CUDA kernels were built and a CUDA device can run them."""
    return _C.has_cuda() and torch.cuda.is_available() and _C.cuda_device_count() > 0


def info() -> dict:
    """Version, build (CPU / CUDA kernels, architectures) and usable devices, as a dict."""
    from emohrnet_fast import __version__

    build = dict(_C.build_info())
    devices = ["cpu"]
    if cuda_usable():
        devices += [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
    return {
        "version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "build": build,
        "kernels": {"cpu": list(KERNELS), "cuda": list(KERNELS) if build["cuda"] else []},
        "devices": devices,
    }
