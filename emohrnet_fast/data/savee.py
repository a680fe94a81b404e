"""SAVEE (Surrey Audio-Visual Expressed Emotion): ``AudioData/DC/a01.wav``.

Four male speakers (DC, JE, JK, KL), 120 utterances each: 15 per emotion and 30 neutral.
The emotion is the file-name prefix (see ``labels.SAVEE``), the speaker the folder. Copies
that flatten the tree into ``DC_a01.wav`` names are read too.
"""

from __future__ import annotations

import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import audio_files
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "SAVEE"
LAYOUT = "speaker folders DC, JE, JK, KL (optionally under AudioData/) holding a01.wav, sa01.wav"

SPEAKERS = ("DC", "JE", "JK", "KL")
_NAME = re.compile(r"(?:(?P<speaker>DC|JE|JK|KL)_)?(?P<emotion>sa|su|a|d|f|h|n)(?P<number>\d\d)")
_RULE = "name is not EEnn.wav (a, d, f, h, n, sa, su + number) in a DC/JE/JK/KL folder"


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of a SAVEE copy: audio files at any depth under ``root``."""
    utterances, skipped = [], []
    for path in audio_files(root):
        match = _NAME.fullmatch(path.stem)
        speaker = (match["speaker"] or path.parent.name) if match else None
        if match is None or speaker not in SPEAKERS:
            skipped.append(Skipped(path, _RULE))
            continue
        code = match["emotion"]
        utterances.append(
            Utterance(
                path=path,
                label=labels.SAVEE[code],
                speaker=speaker,
                gender="male",
                source_label=code,
                metadata={"number": int(match["number"])},
            )
        )
    return utterances, skipped
