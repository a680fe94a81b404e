"""Atomic file writes: readers (and a rerun after ``kill -9``) see the old file or the new one,
never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shareable(path: Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open()`` / ``mkdir()`` would have (0666 / 0777 less
    the umask): ``mkstemp`` and ``mkdtemp`` make theirs owner-only, which would leave saved
    models and reports unreadable to the other users of a shared machine."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (bytes, or a function that writes into the open binary file) to a
    temporary file beside ``path`` (named as :func:`temp_glob` matches), fsync it, then rename
    it over ``path``. On any error the temporary file is removed and the error re-raised; a
    killed process leaves only the temporary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        shareable(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_glob(path: Path) -> str:
    """Glob pattern (in ``path.parent``) of the temporary files :func:`atomic_write` makes for
    ``path``."""
    return f".{path.name}.*.tmp"
