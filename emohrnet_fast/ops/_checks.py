"""Input validation shared by the custom-op wrappers: one message per failure, naming the
argument and what was expected, raised before any pointer reaches C++."""

from __future__ import annotations

import torch
from torch import Tensor

from emohrnet_fast._extension import _C
from emohrnet_fast.config import FrontEndConfig

# Read once: the ops' checks run inside torch.compile graphs, and dynamo cannot trace a call
# into the pybind11 module (on CUDA tensors it broke fullgraph=True; H200, 2026-12-04).
KERNELS_HAVE_CUDA: bool = _C.has_cuda()


def check_tensor(name: str, value: object) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def check_device_supported(name: str, tensor: Tensor) -> None:
    if tensor.device.type == "cpu":
        return
    if tensor.device.type != "cuda":
        raise ValueError(f"{name}: device {tensor.device} is not supported (cpu or cuda)")
    if not KERNELS_HAVE_CUDA:
        raise RuntimeError(
            f"{name} is on {tensor.device}, but this emohrnet_fast build has no CUDA kernels "
            "(it was built without nvcc); rebuild with a CUDA toolkit or use CPU tensors"
        )


def check_same_device(name: str, tensor: Tensor, device: torch.device, hint: str = "") -> None:
    if tensor.device != device:
        raise ValueError(f"{name} is on {tensor.device} but the input is on {device}{hint}")


def check_real_float(name: str, tensor: Tensor) -> None:
    if tensor.is_complex():
        raise TypeError(
            f"{name}: expected a real floating-point tensor, got complex {tensor.dtype}"
        )
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor, got {tensor.dtype}; convert integer "
            "PCM first (e.g. int16 audio: x.float() / 32768)"
        )


def check_tensor_list(name: str, value: object, min_len: int, max_len: int) -> list[Tensor]:
    """A list or tuple of ``min_len`` to ``max_len`` tensors, returned as a list."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name}: expected a list or tuple of tensors, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise ValueError(f"{name}: expected {min_len} to {max_len} tensors, got {len(value)}")
    return [check_tensor(f"{name}[{i}]", item) for i, item in enumerate(value)]


def check_config(config: object) -> FrontEndConfig:
    """``config`` itself, or ``FrontEndConfig()`` for ``None``."""
    if config is None:
        return FrontEndConfig()
    if not isinstance(config, FrontEndConfig):
        raise TypeError(f"config: expected FrontEndConfig, got {type(config).__name__}")
    return config


def check_waveform(name: str, value: object) -> Tensor:
    """A real floating tensor of shape ``(..., time)`` with at least one sample."""
    waveform = check_tensor(name, value)
    check_real_float(name, waveform)
    if waveform.dim() == 0:
        raise ValueError(f"{name}: expected shape (..., time), got a 0-d tensor")
    if waveform.numel() == 0:
        raise ValueError(f"{name}: expected at least one sample, got shape {tuple(waveform.shape)}")
    return waveform
