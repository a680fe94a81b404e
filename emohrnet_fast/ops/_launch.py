"""Launch plumbing shared by the custom-op implementations."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def cuda_stream_context(tensor: Tensor):
    """``(device guard, stream handle)``: launches go to ``tensor``'s device, on the caller's
    current stream there (handle 0 and a no-op guard for CPU tensors)."""
    if not tensor.is_cuda:
        return contextlib.nullcontext(), 0
    return torch.cuda.device(tensor.device), torch.cuda.current_stream(tensor.device).cuda_stream
