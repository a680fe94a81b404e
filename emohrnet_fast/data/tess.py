"""TESS (Toronto Emotional Speech Set): ``OAF_angry/OAF_back_angry.wav``.

Two speakers, OAF (older adult female, 64) and YAF (younger adult female, 26), 200 target
words each in 7 emotions, 2800 files at 24 414 Hz. The emotion is the file name's last word
(``ps``: pleasant surprise). Folder names are not used: their spelling differs between the
copies in circulation (``OAF_Fear``, ``OAF_Pleasant_surprise``, ``YAF_pleasant_surprised``).
"""

from __future__ import annotations

import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import audio_files
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "TESS"
LAYOUT = "folders such as OAF_angry/ holding OAF_back_angry.wav (speaker_word_emotion.wav)"

AGES = {"OAF": 64, "YAF": 26}
_NAME = re.compile(r"(?P<speaker>OAF|YAF)_(?P<word>.+)_(?P<emotion>[a-z]+)", re.IGNORECASE)
_RULE = "name is not OAF|YAF_word_emotion.wav (angry, disgust, fear, happy, neutral, ps, sad)"


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of a TESS copy: every audio file at any depth under ``root``."""
    utterances, skipped = [], []
    for path in audio_files(root):
        match = _NAME.fullmatch(path.stem)
        if match is None or match["emotion"].lower() not in labels.TESS:
            skipped.append(Skipped(path, _RULE))
            continue
        emotion = match["emotion"].lower()
        speaker = match["speaker"].upper()
        utterances.append(
            Utterance(
                path=path,
                label=labels.TESS[emotion],
                speaker=speaker,
                gender="female",
                source_label=emotion,
                metadata={"word": match["word"].lower(), "age": AGES[speaker]},
            )
        )
    return utterances, skipped
