"""Loads the compiled core. A failed import is loud: the package cannot work without it."""

from __future__ import annotations

try:
    from emohrnet_fast import _C
except ImportError as err:  # pragma: no cover - exercised only by broken installs
    raise ImportError(
        "emohrnet_fast: the compiled core emohrnet_fast._C failed to import "
        f"({err}). Reinstall with `pip install .` from the repository root (the build needs "
        "a C++17 compiler, CMake >= 3.25 and OpenMP; see README.md)."
    ) from err

__all__ = ["_C"]
