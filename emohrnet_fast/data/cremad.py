"""CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav``.

File name: actor (1001 ... 1091), sentence (12 three-letter codes), emotion (see
``labels.CREMAD``), intensity (LO, MD, HI, or XX unspecified). 91 actors, 7442 clips.
Genders come from ``VideoDemographics.csv`` (the release's actor table) when it is beside
``AudioWAV``; without it gender is ``None``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import audio_files, layout_error
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "CREMA-D"
LAYOUT = "AudioWAV/1001_DFA_ANG_XX.wav (actor, sentence, emotion, intensity)"

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_NAME = re.compile(
    r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})"
)
_RULE = "name is not AAAA_SSS_EEE_LL.wav (actor, sentence, emotion, intensity)"


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of a CREMA-D copy: ``root/AudioWAV/*.wav`` (or ``root`` is ``AudioWAV``)."""
    folder = root / "AudioWAV"
    if not folder.is_dir():
        if root.name != "AudioWAV":
            raise layout_error(TITLE, root, LAYOUT, "no AudioWAV folder")
        folder = root
    genders = _genders(folder.parent / "VideoDemographics.csv")
    utterances, skipped = [], []
    for path in audio_files(folder, recursive=False):
        match = _NAME.fullmatch(path.stem)
        if (
            match is None
            or not 1001 <= int(match["actor"]) <= 1091
            or match["sentence"] not in SENTENCES
            or match["emotion"] not in labels.CREMAD
            or match["level"] not in INTENSITIES
        ):
            skipped.append(Skipped(path, _RULE))
            continue
        utterances.append(
            Utterance(
                path=path,
                label=labels.CREMAD[match["emotion"]],
                speaker=match["actor"],
                gender=genders.get(match["actor"]),
                source_label=match["emotion"],
                metadata={
                    "sentence": match["sentence"],
                    "intensity": INTENSITIES[match["level"]],
                },
            )
        )
    return utterances, skipped


def _genders(table: Path) -> dict[str, str]:
    """Actor id -> "female"/"male" from the release's VideoDemographics.csv, if present."""
    if not table.is_file():
        return {}
    with table.open(newline="", encoding="utf-8-sig") as f:
        return {
            row["ActorID"].strip(): row["Sex"].strip().lower()
            for row in csv.DictReader(f)
            if row.get("ActorID") and row.get("Sex", "").strip().lower() in ("female", "male")
        }
