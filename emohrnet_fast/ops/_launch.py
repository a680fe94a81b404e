"""Launch plumbing shared by the custom-op implementations."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

_NO_GUARD = contextlib.nullcontext()
# The current stream's cudaStream_t as an integer, without building a torch.cuda.Stream
# (what torch.compile's generated code calls; absent from CPU-only builds of torch).
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def cuda_stream_context(tensor: Tensor):
    """``(device guard, stream handle)``: launches go to ``tensor``'s device, on the caller's
    current stream there (handle 0 and a no-op guard for CPU tensors). The guard is a no-op
    too when that device is already current: every launch pays this, a few microseconds
    with ``torch.cuda.device`` and ``current_stream`` objects, on ops whose kernels can be
    that short."""
    if not tensor.is_cuda:
        return _NO_GUARD, 0
    index = tensor.get_device()
    if _current_raw_stream is not None:
        stream = _current_raw_stream(index)
    else:
        stream = torch.cuda.current_stream(index).cuda_stream
    if index == torch.cuda.current_device():
        return _NO_GUARD, stream
    return torch.cuda.device(index), stream
