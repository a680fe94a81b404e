"""Tiny corpus trees in each official layout, written into a test's tmp_path.

Every file is a short tone (50 ms) at the corpus's native rate, so decoding a whole tree
takes milliseconds. Each builder returns the root and what a correct reader must find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

DURATION = 0.05  # seconds per fixture clip


def tone(path: Path, sample_rate: int, *, channels: int = 1, frequency: float = 440.0) -> Path:
    """Write a ``DURATION``-second sine (``channels`` identical channels, 16-bit PCM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(DURATION * sample_rate)) / sample_rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * t).astype(np.float32)
    soundfile.write(path, np.repeat(wave[:, None], channels, axis=1), sample_rate, "PCM_16")
    return path


def junk(path: Path, content: bytes = b"not audio") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def emodb(root: Path, *, flat: bool = False) -> Path:
    """``wav/03a01Fa.wav`` (or flat): 2 speakers x 7 emotions, plus a stray file."""
    folder = root if flat else root / "wav"
    for speaker in ("03", "08"):
        for i, emotion in enumerate("WLEAFTN"):
            tone(folder / f"{speaker}a0{i + 1}{emotion}a.wav", 16000)
    tone(folder / "notes.wav", 16000)  # does not match the naming rule
    (root / "silb").mkdir(parents=True, exist_ok=True)  # other release folders are ignored
    return root


def ravdess(root: Path) -> Path:
    """Two actors' speech plus the song and video files of the full release (to skip)."""
    base = root / "Audio_Speech_Actors_01-24"
    for actor in ("01", "02"):
        for emotion in ("01", "02", "03", "04", "05", "06", "07", "08"):
            intensity = "01" if emotion == "01" else "02"  # neutral has no strong take
            tone(base / f"Actor_{actor}" / f"03-01-{emotion}-{intensity}-02-01-{actor}.wav", 48000)
    tone(base / "Actor_01" / "03-02-03-01-01-01-01.wav", 48000)  # song
    junk(base / "Actor_01" / "01-01-03-01-01-01-01.mp4")  # audio-video
    junk(base / "Actor_02" / "02-01-03-01-01-01-02.mp4")  # video only
    tone(base / "Actor_02" / "03-01-03-01-01-01-05.wav", 48000)  # actor differs from folder
    tone(base / "Actor_02" / "readme.wav", 48000)  # name does not match
    return root


def cremad(root: Path) -> Path:
    """Three actors, their demographics table, a bad name and the known empty file."""
    for actor, sentence, emotion, level in [
        ("1001", "DFA", "ANG", "XX"),
        ("1001", "IEO", "HAP", "HI"),
        ("1002", "TIE", "SAD", "LO"),
        ("1002", "IOM", "NEU", "XX"),
        ("1091", "WSI", "FEA", "MD"),
        ("1091", "ITS", "DIS", "XX"),
    ]:
        tone(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_{level}.wav", 16000)
    tone(root / "AudioWAV" / "1001_DFA_XYZ_XX.wav", 16000)  # unknown emotion code
    junk(root / "AudioWAV" / "1076_MTI_SAD_XX.wav", b"")  # empty in the real release too
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n1091,29,Female,Asian,Not Hispanic\n"
    )
    return root


# TESS folder spellings found in circulating copies; the reader must not rely on them.
TESS_FILES = {
    "OAF_angry/OAF_back_angry.wav": ("OAF", "angry"),
    "OAF_Fear/OAF_back_fear.wav": ("OAF", "fearful"),
    "OAF_Pleasant_surprise/OAF_back_ps.wav": ("OAF", "surprised"),
    "OAF_neutral/OAF_bite_neutral.wav": ("OAF", "neutral"),
    "YAF_pleasant_surprised/YAF_bean_ps.wav": ("YAF", "surprised"),
    "YAF_disgust/YAF_bean_disgust.wav": ("YAF", "disgust"),
    "YAF_happy/YAF_bean_happy.wav": ("YAF", "happy"),
    "YAF_sad/YAF_bean_sad.wav": ("YAF", "sad"),
}
TESS_RATE = 24414


def tess(root: Path) -> Path:
    base = root / "TESS Toronto emotional speech set data"
    for relative in TESS_FILES:
        tone(base / relative, TESS_RATE)
    tone(base / "YAF_sad" / "YAF_bean_bored.wav", TESS_RATE)  # not a TESS emotion
    return root


def savee(root: Path) -> Path:
    """``AudioData/<speaker>/<prefix><nn>.wav`` for the four speakers."""
    for speaker in ("DC", "JE", "JK", "KL"):
        for prefix in ("a", "d", "f", "h", "n", "sa", "su"):
            tone(root / "AudioData" / speaker / f"{prefix}01.wav", 44100)
    tone(root / "AudioData" / "DC" / "n02.wav", 44100)
    tone(root / "AudioData" / "DC" / "x01.wav", 44100)  # unknown prefix
    return root


def emovo(root: Path) -> Path:
    """Six actors at 48 kHz, stereo and mono files mixed as in the release."""
    for index, speaker in enumerate(("f1", "f2", "f3", "m1", "m2", "m3")):
        for code in ("dis", "gio", "neu", "pau", "rab", "sor", "tri"):
            channels = 2 if (index + len(code)) % 2 else 1
            tone(root / speaker / f"{code}-{speaker}-b1.wav", 48000, channels=channels)
    tone(root / "f1" / "rab-m1-b1.wav", 48000)  # actor differs from folder
    tone(root / "f1" / "documento.wav", 48000)  # name does not match
    return root


IEMOCAP_LINES = {
    # session: [(turn, label), ...]; the file's header and the annotator lines are real format.
    1: [
        ("Ses01F_impro01_F000", "neu"),
        ("Ses01F_impro01_M000", "exc"),
        ("Ses01F_impro01_F001", "xxx"),
        ("Ses01F_script01_1_M001", "ang"),
        ("Ses01F_script01_1_F002", "fru"),
        ("Ses01F_script01_1_M002", "oth"),
        ("Ses01F_script01_1_F003", "hap"),
    ],
    2: [
        ("Ses02M_impro03_M000", "sad"),
        ("Ses02M_impro03_F000", "exc"),
        ("Ses02M_impro03_F001", "sur"),
        ("Ses02M_script02_2_M001", "neu"),
    ],
}


def iemocap(root: Path, *, missing_wav: str | None = None) -> Path:
    """Two sessions, labels including xxx, oth, fru and exc; ``missing_wav`` has no audio."""
    for session, turns in IEMOCAP_LINES.items():
        base = root / f"Session{session}"
        by_dialog: dict[str, list[str]] = {}
        for n, (turn, code) in enumerate(turns):
            dialog = turn.rsplit("_", 1)[0]
            start = 1.5 * n
            by_dialog.setdefault(dialog, []).append(
                f"[{start:.4f} - {start + 1.2:.4f}]\t{turn}\t{code}\t[2.5000, 3.0000, 3.5000]\n"
                "C-E1:\tNeutral;\t()\nC-E2:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
            )
            if turn != missing_wav:
                tone(base / "sentences" / "wav" / dialog / f"{turn}.wav", 16000)
        evaluation = base / "dialog" / "EmoEvaluation"
        (evaluation / "Categorical").mkdir(parents=True, exist_ok=True)
        for dialog, blocks in by_dialog.items():
            header = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            (evaluation / f"{dialog}.txt").write_text(header + "".join(blocks))
        (evaluation / "Categorical" / f"{dialog}_e1_cat.txt").write_text("ignored\n")
    return root
