"""What was built and what can run: ``emohrnet_fast.info()``."""

from __future__ import annotations

import platform

import torch

from emohrnet_fast._extension import _C

KERNELS = ("log_mel", "spec_augment", "hr_fuse")


def cuda_usable() -> bool:
    """Whether the CUDA kernels were built and a CUDA device can run them."""
    return _C.has_cuda() and torch.cuda.is_available() and _C.cuda_device_count() > 0


def resolve_device(device: torch.device | str | None, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` with an explicit CUDA index (``None``: the current CUDA
    device when :func:`cuda_usable`, else the CPU).

    Raises:
        ValueError: not a device, not CPU or CUDA, CUDA without a usable device, or an index
            past the devices there are; the message starts with ``{name}={device!r}``.
    """
    if device is None:
        device = "cuda" if cuda_usable() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"{name}={device!r}: not a device ({error})") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}={device!r}: expected 'cpu' or 'cuda[:N]'")
    if resolved.type == "cuda":
        if not cuda_usable():
            raise ValueError(f"{name}={device!r}: no usable CUDA device here")
        count = torch.cuda.device_count()
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        elif resolved.index >= count:
            raise ValueError(
                f"{name}={device!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    return resolved


def device_name(device: str | torch.device) -> str:
    """The GPU's name, or the CPU's model and the threads torch uses."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads"


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
