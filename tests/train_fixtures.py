"""A tiny EmoDB copy and a tiny training config, shared by the training, CV and CLI tests."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import torch
from ef_testing import EMODB

import emohrnet_fast as ef
from emohrnet_fast import TrainConfig, checkpoint
from emohrnet_fast.data import load_corpus

train_module = importlib.import_module("emohrnet_fast.train")  # ef.train is the function

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


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in checkpoint.unwrap(model).state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def interrupted_and_resumed(config, corpus, out_dir, monkeypatch, **train_kwargs):
    """Train ``config`` into ``out_dir``, stopped by a KeyboardInterrupt as epoch 3 starts,
    then ``resume=True`` to the end: the resumed run's TrainResult (``train_kwargs`` go to
    both calls)."""
    original = train_module._Trainer._train_epoch

    def interrupted(self, epoch, progress):
        if epoch == 3:
            raise KeyboardInterrupt
        return original(self, epoch, progress)

    with monkeypatch.context() as patch:
        patch.setattr(train_module._Trainer, "_train_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ef.train(config, corpus, out_dir=out_dir, progress=False, quiet=True, **train_kwargs)
    return ef.train(
        config, corpus, out_dir=out_dir, resume=True, progress=False, quiet=True, **train_kwargs
    )
