"""A tiny EmoDB copy and a tiny training config, shared by the training, CV and CLI tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from ef_testing import EMODB

from emohrnet_fast import TrainConfig
from emohrnet_fast.data import load_corpus

# Four speakers x three emotions x two sentences: 24 clips of 2 s.
SPEAKERS = ("03", "08", "09", "10")
EMOTIONS = ("W", "N", "T")  # angry, neutral, sad (EmoDB letter codes)

# A center-loss CNN of a few thousand weights on 0.5-s crops: a step takes milliseconds, and
# the model still has every part (center loss, decoder, SpecAugment, input_norm).
TINY = TrainConfig(
    model="centerloss_cnn_mfcc",
    model_overrides={"channels": (8, 8, 8, 8), "embedding_dim": 16},
    clip_seconds=0.5,
    batch_size=8,
    epochs=3,
    lr=3e-3,
    device="cpu",
)


def make_tiny_emodb(folder: Path, per_cell: int = 2) -> Path:
    """Copy ``per_cell`` files per (speaker, emotion) of the shared EmoDB into ``folder``."""
    files = sorted(EMODB.glob("*.wav")) or sorted((EMODB / "wav").glob("*.wav"))
    if not files:
        import pytest

        pytest.skip(f"EmoDB not found at {EMODB} (set EMOHRNET_EMODB)")
    folder.mkdir(parents=True, exist_ok=True)
    for speaker in SPEAKERS:
        for emotion in EMOTIONS:
            cell = [f for f in files if f.name[:2] == speaker and f.name[5] == emotion]
            for f in cell[:per_cell]:
                shutil.copy(f, folder / f.name)
    return folder


def tiny_corpus(folder: Path):
    root = make_tiny_emodb(folder / "emodb")
    return load_corpus("emodb", root, cache_dir=folder / "cache", progress=False)
