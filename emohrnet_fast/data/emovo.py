"""EMOVO (Italian emotional speech): ``f1/rab-f1-b1.wav``.

Six actors (f1, f2, f3, m1, m2, m3), 14 sentences (b1 b2 b3, l1 ... l4, n1 ... n5, d1 d2) in
7 emotions by Italian code (see ``labels.EMOVO``): 588 files at 48 kHz. The release mixes
stereo and mono files; decoding downmixes to mono.
"""

from __future__ import annotations

import re
from pathlib import Path

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import audio_files
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "EMOVO"
LAYOUT = "actor folders f1..f3, m1..m3 holding emotion-actor-sentence.wav (rab-f1-b1.wav)"

_NAME = re.compile(r"(?P<emotion>[a-z]{3})-(?P<speaker>[fm][1-3])-(?P<sentence>[bdln]\d)")
_RULE = "name is not eee-aa-ss.wav (dis gio neu pau rab sor tri - f1..m3 - sentence)"


def scan(root: Path) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of an EMOVO copy: audio files at any depth under ``root``."""
    utterances, skipped = [], []
    for path in audio_files(root):
        match = _NAME.fullmatch(path.stem.lower())
        if match is None or match["emotion"] not in labels.EMOVO:
            skipped.append(Skipped(path, _RULE))
            continue
        if path.parent.name.lower() != match["speaker"]:
            skipped.append(Skipped(path, "actor in the name differs from its folder"))
            continue
        speaker = match["speaker"]
        utterances.append(
            Utterance(
                path=path,
                label=labels.EMOVO[match["emotion"]],
                speaker=speaker,
                gender="female" if speaker[0] == "f" else "male",
                source_label=match["emotion"],
                metadata={"sentence": match["sentence"]},
            )
        )
    return utterances, skipped
