"""IEMOCAP: ``Session1..5/dialog/EmoEvaluation/*.txt`` + ``sentences/wav/<dialog>/<turn>.wav``.

Each EmoEvaluation file has one line per turn,
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``
(start and end in seconds, turn name, majority label, valence/activation/dominance). Ten
speakers: a man and a woman per session; the letter after the turn's last underscore is its
speaker's (``Ses01F_impro01_M003`` is the male speaker of session 1, ``Ses01M``), the letter in
``Ses01F`` only tells who wore the motion-capture markers. ``label_set="4class"`` (default) is
the common protocol (neutral, happy + excited, sad, angry; 5531 turns); ``"full"`` keeps every
category. Turns labelled ``xxx`` (no majority) are always left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from emohrnet_fast.data import labels
from emohrnet_fast.data._scan import layout_error
from emohrnet_fast.data.corpus import Skipped, Utterance

TITLE = "IEMOCAP"
LAYOUT = (
    "Session1 ... Session5 folders, each with dialog/EmoEvaluation/*.txt label files and "
    "sentences/wav/<dialog>/<turn>.wav"
)
LABEL_SETS = {"4class": labels.IEMOCAP_4CLASS, "full": labels.IEMOCAP_FULL}

_SESSION = re.compile(r"Session([1-5])")
_LINE = re.compile(
    r"\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\s+(?P<turn>Ses\d\d[FM]_\S+)\s+(?P<code>\w+)\s+"
    r"\[(?P<valence>[\d.]+), (?P<activation>[\d.]+), (?P<dominance>[\d.]+)\]"
)
_TURN = re.compile(r"Ses(?P<session>\d\d)[FM]_(?P<mode>impro|script)\S*_(?P<speaker>[FM])\d+")


def scan(
    root: Path, label_set: Literal["4class", "full"] = "4class"
) -> tuple[list[Utterance], list[Skipped]]:
    """Utterances of an IEMOCAP copy at ``root`` (the folder holding ``Session1`` ...).

    Args:
        root: IEMOCAP_full_release (or any folder with the Session folders).
        label_set: ``"4class"`` (excitement merged into happiness) or ``"full"``.
    """
    if label_set not in LABEL_SETS:
        raise ValueError(f"label_set={label_set!r}: expected '4class' or 'full'")
    table = LABEL_SETS[label_set]
    sessions = sorted(p for p in root.iterdir() if p.is_dir() and _SESSION.fullmatch(p.name))
    if not sessions:
        raise layout_error(TITLE, root, LAYOUT, "no Session1..5 folder")
    utterances, skipped = [], []
    for session in sessions:
        label_files = sorted((session / "dialog" / "EmoEvaluation").glob("*.txt"))
        if not label_files:
            raise layout_error(TITLE, root, LAYOUT, f"no {session.name}/dialog/EmoEvaluation/*.txt")
        for label_file in label_files:
            text = label_file.read_text(encoding="utf-8", errors="replace")
            for match in _LINE.finditer(text):
                utterance, reason = _turn(match, session, table, label_set)
                if utterance is None:
                    skipped.append(Skipped(_wav_path(session, match["turn"]), reason))
                else:
                    utterances.append(utterance)
    return utterances, skipped


def _wav_path(session: Path, turn: str) -> Path:
    dialog = turn.rsplit("_", 1)[0]
    return session / "sentences" / "wav" / dialog / f"{turn}.wav"


def _turn(
    match: re.Match, session: Path, table: dict[str, str], label_set: str
) -> tuple[Utterance | None, str]:
    turn, code = match["turn"], match["code"]
    name = _TURN.fullmatch(turn)
    path = _wav_path(session, turn)
    if name is None:
        return None, "turn name is not SesNN[FM]_<dialog>_[FM]NNN"
    if code == "xxx":
        return None, "label xxx (annotators without a majority)"
    if code not in table:
        return None, f"label {code} is outside the {label_set} label set"
    if not path.is_file():
        return None, "labelled turn without its sentences/wav file"
    number = int(session.name[-1])
    letter = name["speaker"]
    return (
        Utterance(
            path=path,
            label=table[code],
            speaker=f"Ses{number:02d}{letter}",
            gender="female" if letter == "F" else "male",
            source_label=code,
            metadata={
                "session": number,
                "dialog": turn.rsplit("_", 1)[0],
                "mode": "improvised" if name["mode"] == "impro" else "scripted",
                "start": float(match["start"]),
                "end": float(match["end"]),
                "valence": float(match["valence"]),
                "activation": float(match["activation"]),
                "dominance": float(match["dominance"]),
            },
        ),
        "",
    )
