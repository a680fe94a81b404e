"""The common label space and every corpus's mapping into it, in one place.

Each table maps a corpus's own emotion code (as it appears in its file names or label files)
to a common label. Class indices follow :data:`COMMON_LABELS` order, so a label has the same
position in every corpus's label set.
"""

from __future__ import annotations

from collections.abc import Sequence

# Order fixes class indices: the labels shared by most corpora first.
COMMON_LABELS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
    "calm",
    "boredom",
    "excited",
    "frustrated",
    "other",
)

# EmoDB: German initial in the file name (03a01Fa.wav -> F).
EMODB = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}

# RAVDESS: third field of 03-01-EE-II-SS-RR-AA.
RAVDESS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}

# CREMA-D: third field of 1001_DFA_ANG_XX.
CREMAD = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}

# TESS: last word of the file name, lower-cased (OAF_back_ps.wav -> ps).
TESS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",  # "pleasant surprise"
    "sad": "sad",
}

# SAVEE: letter prefix of the file name (sa03.wav -> sa).
SAVEE = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}

# EMOVO: Italian code before the first hyphen (rab-f1-b1.wav -> rab).
EMOVO = {
    "dis": "disgust",  # disgusto
    "gio": "happy",  # gioia (joy)
    "neu": "neutral",  # neutro
    "pau": "fearful",  # paura
    "rab": "angry",  # rabbia
    "sor": "surprised",  # sorpresa
    "tri": "sad",  # tristezza
}

# IEMOCAP: the categorical majority label in EmoEvaluation/*.txt; "xxx" (no majority) is never
# a label. The full set keeps every category, the 4-class protocol (the common one in the SER
# literature) keeps four and merges excitement into happiness.
IEMOCAP_FULL = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "fea": "fearful",
    "sur": "surprised",
    "dis": "disgust",
    "oth": "other",
}
IEMOCAP_4CLASS = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "happy",
    "sad": "sad",
    "ang": "angry",
}


def label_order(labels: set[str] | list[str]) -> tuple[str, ...]:
    """Labels sorted by :data:`COMMON_LABELS` position, then labels outside it by name."""
    rank = {label: i for i, label in enumerate(COMMON_LABELS)}
    return tuple(sorted(set(labels), key=lambda label: (rank.get(label, len(rank)), label)))


def column_order(labels: Sequence[str], into: Sequence[str], mismatch: str) -> list[int]:
    """The indices that put columns named ``labels`` in the order of ``into`` (scores of
    models that learnt the same classes in different orders, made comparable).

    Raises:
        ValueError: ``mismatch``, when the two hold different label sets.
    """
    if sorted(labels) != sorted(into):
        raise ValueError(mismatch)
    return [list(labels).index(name) for name in into]
