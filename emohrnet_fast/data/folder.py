"""Users' own data: a folder per label (``folder``) or a CSV manifest (``csv``)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emohrnet_fast.data._scan import audio_files, layout_error
from emohrnet_fast.data.corpus import Skipped, Utterance

FOLDER_TITLE = "folder"
FOLDER_LAYOUT = "one sub-folder per label, root/<label>/**/*.wav (or .flac, .ogg)"
CSV_TITLE = "csv manifest"
CSV_LAYOUT = (
    "a CSV file with a header and columns path,label[,speaker][,gender][,...]; "
    "paths relative to the CSV's folder"
)
_GENDERS = {"f": "female", "female": "female", "m": "male", "male": "male"}


def scan_folder(
    root: Path, speaker_pattern: str | None = None
) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances under ``root/<label>/``; the label is the top-level folder's name.

    Args:
        root: the folder holding one sub-folder per label.
        speaker_pattern: regular expression searched in each file's path relative to
            ``root`` (``/``-separated); the group named ``speaker`` (else group 1, else the
            whole match) is the speaker id. Files it does not match are skipped. ``None``:
            no speaker ids (only ``splits(..., "random")`` then applies).
    """
    pattern = _compile(speaker_pattern)
    utterances, skipped = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in audio_files(folder):
            speaker = None
            if pattern is not None:
                speaker = _speaker(pattern, path.relative_to(root).as_posix())
                if speaker is None:
                    skipped.append(Skipped(path, "speaker_pattern does not match the path"))
                    continue
            utterances.append(Utterance(path=path, label=folder.name, speaker=speaker))
    loose = audio_files(root, recursive=False)
    skipped += [Skipped(p, "audio file outside a label folder") for p in loose]
    return utterances, skipped


def scan_csv(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances listed in the CSV manifest ``root``.

    Columns ``path`` and ``label`` are required; ``speaker`` and ``gender`` (``f``/``m``/
    ``female``/``male``) are optional; any other column goes into ``metadata`` as text.
    Rows whose file is missing or whose label is empty are skipped.
    """
    if not root.is_file():
        raise layout_error(CSV_TITLE, root, CSV_LAYOUT, "a folder, not a file")
    with root.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise layout_error(CSV_TITLE, root, CSV_LAYOUT, f"columns {columns}, no {missing}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    utterances, skipped = [], []
    for row in rows:
        path = root.parent / row["path"]
        if not row["label"]:
            skipped.append(Skipped(path, "manifest row without a label"))
        elif not path.is_file():
            skipped.append(Skipped(path, "listed in the manifest but missing"))
        else:
            extra = {
                k: v for k, v in row.items() if k not in ("path", "label", "speaker", "gender")
            }
            utterances.append(
                Utterance(
                    path=path,
                    label=row["label"],
                    speaker=row.get("speaker") or None,
                    gender=_GENDERS.get(row.get("gender", "").lower()),
                    metadata=extra,
                )
            )
    return utterances, skipped


def _compile(speaker_pattern: str | None) -> re.Pattern | None:
    if speaker_pattern is None:
        return None
    try:
        return re.compile(speaker_pattern)
    except re.error as error:
        raise ValueError(f"speaker_pattern={speaker_pattern!r}: {error}") from error


def _speaker(pattern: re.Pattern, relative: str) -> str | None:
    match = pattern.search(relative)
    if match is None:
        return None
    if "speaker" in pattern.groupindex:
        return match["speaker"]
    return match[1] if pattern.groups else match[0]
