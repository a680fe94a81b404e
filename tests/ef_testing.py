"""Shared test helpers, imported by tests (pytest puts this folder on sys.path) and by
benchmarks (benchmarks/conftest.py adds it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from emohrnet_fast._info import cuda_usable

REPO = Path(__file__).resolve().parents[1]
EMODB = Path(os.environ.get("EMOHRNET_EMODB", REPO.parent / "shared" / "data" / "emodb"))

HAS_CUDA = cuda_usable()

# One test body (or benchmark), run per device; CUDA cases are skipped without a usable GPU.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")],
    ),
]

# Kernel vs reference (DESIGN.md): Mel power within this fraction of each frame's maximum.
POWER_RTOL = {"cpu": 1e-5, "cuda": 1e-4}
DB_ATOL = 1e-3


def frame_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max over bands of |expected|, per frame; inputs
    ``(..., bands, frames)`` in the power domain. A frame whose expected maximum is 0 must
    match exactly."""
    actual, expected = actual.double().cpu(), expected.double().cpu()
    scale = expected.abs().amax(dim=-2, keepdim=True)
    err = (actual - expected).abs()
    exact = scale == 0
    ratio = torch.where(exact, err * float("inf"), err / torch.where(exact, 1.0, scale))
    ratio = torch.nan_to_num(ratio, nan=0.0)  # inf * 0 for exact matches on silent frames
    return float(ratio.max()) if ratio.numel() else 0.0


def emodb_files(count: int) -> list[Path]:
    files = sorted(EMODB.glob("*.wav")) or sorted((EMODB / "wav").glob("*.wav"))
    if not files:
        pytest.skip(f"EmoDB not found at {EMODB} (set EMOHRNET_EMODB)")
    step = max(1, len(files) // count)
    return files[::step][:count]


def load_wav(path: Path) -> tuple[torch.Tensor, int]:
    soundfile = pytest.importorskip("soundfile")

    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(data.mean(axis=1).copy()), sr
