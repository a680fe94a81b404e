"""EmoDB (Berlin Database of Emotional Speech): ``wav/03a01Fa.wav`` or a flat folder.

File name ``SSTTTEV.wav``: speaker (03, 08 ... 16), text (a01 ... b10), emotion (German
initial, see ``labels.EMODB``), take (a, b, ...). 10 speakers, 535 utterances, 16 kHz in the
original release.
"""

from __future__ import annotations

import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import audio_files
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "EmoDB"
LAYOUT = "wav/03a01Fa.wav (or the .wav files directly in root): speaker, text, emotion, take"

# The corpus documentation lists each speaker's gender.
GENDERS = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
_NAME = re.compile(r"(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<take>[a-z])")
_RULE = "name is not SSTTTEV.wav (speaker 03..16, text a01..b10, emotion WLEAFTN, take a..z)"


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of an EmoDB copy at ``root`` (``root/wav/*.wav`` or ``root/*.wav``)."""
    folder = root / "wav" if (root / "wav").is_dir() else root
    utterances, skipped = [], []
    for path in audio_files(folder, recursive=False):
        match = _NAME.fullmatch(path.stem)
        if match is None or match["speaker"] not in GENDERS:
            skipped.append(Skipped(path, _RULE))
            continue
        code = match["emotion"]
        utterances.append(
            Utterance(
                path=path,
                label=labels.EMODB[code],
                speaker=match["speaker"],
                gender=GENDERS[match["speaker"]],
                source_label=code,
                metadata={"text": match["text"], "take": match["take"]},
            )
        )
    return utterances, skipped
