"""RAVDESS: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``, speech only.

Seven two-digit fields: modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel
(01 speech, 02 song), emotion (see ``labels.RAVDESS``), intensity (01 normal, 02 strong;
neutral has normal only), statement (01 "Kids are talking by the door", 02 "Dogs are sitting
by the door"), repetition (01, 02), actor (01 ... 24; odd male, even female). The speech
audio release has 1440 files (24 actors x 60). Song and video files that sit in the same
tree (the full release) are skipped and counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "RAVDESS"
LAYOUT = "Actor_01 ... Actor_24 folders holding 03-01-EE-II-SS-RR-AA.wav files"

_FOLDER = re.compile(r"Actor_(\d\d)")
_NAME = re.compile(
    r"(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)"
    r"-(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)"
)
_RULE = "name is not MM-VV-EE-II-SS-RR-AA (seven two-digit fields)"
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of a RAVDESS copy: every ``Actor_XX`` folder at any depth under ``root``."""
    utterances, skipped = [], []
    folders = sorted(p for p in root.rglob("Actor_*") if p.is_dir() and _FOLDER.fullmatch(p.name))
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            match = _NAME.fullmatch(path.stem)
            reason = _reject(path, match, folder)
            if match is None or reason:
                skipped.append(Skipped(path, reason or _RULE))
                continue
            actor = match["actor"]
            utterances.append(
                Utterance(
                    path=path,
                    label=labels.RAVDESS[match["emotion"]],
                    speaker=actor,
                    gender="male" if int(actor) % 2 else "female",
                    source_label=match["emotion"],
                    metadata={
                        "intensity": INTENSITIES[match["intensity"]],
                        "statement": int(match["statement"]),
                        "repetition": int(match["repetition"]),
                    },
                )
            )
    return utterances, skipped


def _reject(path: Path, match: re.Match | None, folder: Path) -> str | None:
    """Why ``path`` is not a speech utterance of this actor, or ``None`` if it is."""
    if match is None:
        return _RULE
    if match["modality"] != "03":
        return "video file (modality 01/02): audio-only speech is modality 03"
    if match["channel"] != "01":
        return "song (vocal channel 02): speech only"
    if path.suffix.lower() != ".wav":
        return "not a .wav file"
    if (
        match["emotion"] not in labels.RAVDESS
        or match["intensity"] not in INTENSITIES
        or match["statement"] not in STATEMENTS
    ):
        return "field out of range (emotion 01-08, intensity 01-02, statement 01-02)"
    folder_match = _FOLDER.fullmatch(folder.name)
    if folder_match is None or match["actor"] != folder_match[1]:
        return "actor field differs from its Actor_XX folder"
    return None
