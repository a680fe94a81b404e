"""Loads the compiled core. A failed import is loud: the package cannot work without it."""

from __future__ import annotations

from pathlib import Path

try:
    import emohrnet_fast._C as _C
except ImportError as err:  # pragma: no cover - exercised only by broken installs
    package = Path(__file__).resolve().parent
    if (package.parent / "pyproject.toml").is_file() and not any(package.glob("_C*")):
        # The usual cause: Python started in the repository root, whose source folder (no
        # compiled core) shadows the package that pip installed.
        raise ImportError(
            f"emohrnet_fast: imported from the source tree {package}, which has no compiled "
            "core (emohrnet_fast._C): it shadows the installed package because Python runs "
            "in the repository root. Run from another folder, start Python with -P (python "
            "-P -m ..., or PYTHONSAFEPATH=1), or install in place: pip install "
            "--no-build-isolation -e . (README.md, Install and test)."
        ) from err
    raise ImportError(
        "emohrnet_fast: the compiled core emohrnet_fast._C failed to import "
        f"({err}). Reinstall with `pip install .` from the repository root (the build needs "
        "a C++17 compiler, CMake >= 3.25 and OpenMP; see README.md)."
    ) from err

__all__ = ["_C"]
