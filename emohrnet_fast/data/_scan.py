"""Helpers shared by the corpus readers: finding audio files and naming layout errors."""

from __future__ import annotations

from pathlib import Path

from emohrnet_fast.data.corpus import CorpusLayoutError

# Formats libsndfile decodes that corpora and users' folders come in.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


def audio_files(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Audio files under ``folder`` (by suffix, case-insensitive), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def layout_error(title: str, root: Path, expected: str, found: str) -> CorpusLayoutError:
    """The error for a root that is not ``title``: what was expected and what was found."""
    return CorpusLayoutError(
        f"root={str(root)!r} does not look like {title}: expected {expected}; found {found}"
    )
