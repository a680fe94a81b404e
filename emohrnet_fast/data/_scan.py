"""Helpers shared by the corpus readers: finding audio files and naming layout errors."""

from __future__ import annotations

from pathlib import Path

from emohrnet_fast.data.corpus import CorpusLayoutError, Skipped, Utterance

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


BROKEN_LINK = "a broken symbolic link (its target is missing: annexed content not fetched?)"
DUPLICATE = "a second copy of a recording already read (same file name and speaker)"


def broken_links(folder: Path) -> list[Path]:
    """Symbolic links to audio under ``folder`` whose targets are missing (git-annex, DVC or
    DataLad trees before their content is fetched), sorted: reported, not silently dropped."""
    found = folder.rglob("*")
    return sorted(
        p for p in found if p.suffix.lower() in AUDIO_SUFFIXES and p.is_symlink() and not p.exists()
    )


def drop_duplicates(utterances: list[Utterance]) -> tuple[list[Utterance], list[Skipped]]:
    """The first (by path) of each recording found twice under a root: copies of a corpus
    nested in one download would otherwise sit on both sides of a random split. A
    recording is its file name and speaker (SAVEE reuses names across speaker folders)."""
    kept, seen, extra = [], set(), []
    for utterance in sorted(utterances, key=lambda u: str(u.path)):
        key = (utterance.path.name, utterance.speaker)
        if key in seen:
            extra.append(Skipped(utterance.path, DUPLICATE))
        else:
            seen.add(key)
            kept.append(utterance)
    return kept, extra
