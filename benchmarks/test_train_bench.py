"""Training throughput, clips/s: our training step beside the pipeline a user would write.

Ours is :func:`emohrnet_fast.train`'s own step: waveforms resident on the device, a batch of
random 3-s crops gathered by index, the fused front-end writing the SpecAugment masks in the
same pass, EmoHRNet-small with the hr_fuse kernel, Adam. The baseline: a ``DataLoader`` over
the decoded clips (random crop in ``__getitem__``, default collate), host-to-device copy,
``torchaudio`` MelSpectrogram + AmplitudeToDB and iid Frequency/TimeMasking (where torchaudio
is not installed, the same steps in eager PyTorch: ``torch.stft`` + Mel matmul + dB, and the
masks as index comparisons), the same model with the eager fuse, Adam.

Both run in float32; ours also runs with ``precision="bf16"`` (bf16 autocast: on CUDA, and on
CPUs with native bf16 matrix units such as Intel AMX). Bar (issue 7): >= 2x on CUDA, B=64.
CPU runs B=16 (2 cores) for a figure, not the bar.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ef_testing import DEVICES, torchaudio_frontend

from emohrnet_fast import TrainConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.data.corpus import Utterance, Waveforms, make_corpus
from emohrnet_fast.models import create
from emohrnet_fast.ops import reference

train_module = importlib.import_module("emohrnet_fast.train")

CLIP_SECONDS = 3.0
RATE = 16000
CLIPS = 128  # distinct utterances, 3.5 s each so random crops differ
LABELS = ("neutral", "happy", "sad", "angry")


def _batch(device: str) -> int:
    return 64 if device == "cuda" else 16


def _corpus():
    generator = torch.Generator().manual_seed(0)
    length = int(3.5 * RATE)
    data = torch.randn(CLIPS * length, generator=generator) * 0.1
    utterances = [
        Utterance(Path(f"clip{i:03d}.wav"), LABELS[i % len(LABELS)], f"s{i % 8}")
        for i in range(CLIPS)
    ]
    corpus = make_corpus("synthetic", "synthetic", Path("."), utterances, [], RATE)
    lengths = torch.full((CLIPS,), length, dtype=torch.int64)
    waveforms = Waveforms(data, torch.arange(CLIPS) * length, lengths, RATE)
    import dataclasses

    return dataclasses.replace(corpus, waveforms=waveforms)


def _ours(
    device: str, compile: bool = False, compile_mode: str = "default", precision: str = "fp32"
):
    corpus = _corpus()
    config = TrainConfig(
        model="emohrnet_small",
        clip_seconds=CLIP_SECONDS,
        batch_size=_batch(device),
        device=device,
        precision=precision,
        normalize=False,
        compile=compile,
        compile_mode=compile_mode,
    )
    env = train_module._Distributed()
    trainer = train_module._Trainer(
        config, corpus, None, LABELS, torch.device(device), env, run=None
    )
    trainer.forward.train()
    generator = torch.Generator(device=device).manual_seed(0)
    state = {"order": torch.randperm(CLIPS, device=device), "at": 0}

    def step():
        if state["at"] + trainer.batch > CLIPS:
            state["order"], state["at"] = torch.randperm(CLIPS, device=device), 0
        index = state["order"][state["at"] : state["at"] + trainer.batch]
        state["at"] += trainer.batch
        trainer._step(index, generator)

    return step


class _ClipDataset(torch.utils.data.Dataset):
    """What a user writes: one decoded clip per item, cropped at random."""

    def __init__(self, corpus, targets) -> None:
        self.clips = corpus.waveforms.as_list()
        self.targets = targets
        self.crop = int(CLIP_SECONDS * RATE)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i):
        clip = self.clips[i]
        start = int(torch.randint(0, clip.numel() - self.crop + 1, ()))
        return clip[start : start + self.crop], self.targets[i]


def _features_and_masks(device: str):
    """torchaudio where it is installed; else its eager equivalent (CI's CPU machines)."""
    model_frontend = create("emohrnet_small", len(LABELS)).default_frontend
    policy = SpecAugment()
    found = torchaudio_frontend(model_frontend, device)
    if found is not None:
        import torchaudio

        log_mel, _ = found
        freq = torchaudio.transforms.FrequencyMasking(policy.freq_width, iid_masks=True)
        frames = model_frontend.num_frames(int(CLIP_SECONDS * RATE))
        time = torchaudio.transforms.TimeMasking(policy.max_time_width(frames), iid_masks=True)

        def features(wave):
            x = log_mel(wave).unsqueeze(1)
            for _ in range(policy.freq_masks):
                x = freq(x)
            for _ in range(policy.time_masks):
                x = time(x)
            return x

        return features, "DataLoader + torchaudio + eager fuse"

    def features(wave):
        x = reference.log_mel(wave, model_frontend, check=False)
        masks = policy.draw(x.shape[0], x.shape[-2], x.shape[-1], device)
        return reference.spec_augment(x, masks, check=False).unsqueeze(1)

    return features, "DataLoader + torch.stft/matmul + eager masks + eager fuse"


def _baseline(device: str, tuned: bool = False):
    """The pipeline a user writes; ``tuned``: the same with the usual care ours also takes
    (channels_last, fused Adam on CUDA, and there a pinned two-worker DataLoader), so the
    difference left is the kernels and the resident data."""
    corpus = _corpus()
    targets = corpus.targets
    cuda = device == "cuda"
    loader = torch.utils.data.DataLoader(
        _ClipDataset(corpus, targets),
        batch_size=_batch(device),
        shuffle=True,
        drop_last=True,
        num_workers=2 if tuned and cuda else 0,
        pin_memory=tuned and cuda,
        persistent_workers=tuned and cuda,
    )
    torch.manual_seed(0)
    model = create("emohrnet_small", len(LABELS), fuse="reference").to(device).train()
    layout = torch.channels_last if tuned else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=1e-3, fused=True if tuned and cuda else None
    )
    features, name = _features_and_masks(device)
    if tuned:
        name += " (tuned: channels_last, fused Adam, pinned workers on CUDA)"
    state = {"iter": iter(loader)}

    def step():
        try:
            wave, target = next(state["iter"])
        except StopIteration:
            state["iter"] = iter(loader)
            wave, target = next(state["iter"])
        wave, target = wave.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with torch.no_grad():
            x = features(wave).contiguous(memory_format=layout)
        loss = F.cross_entropy(model(x).logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["ours", "ours bf16", "baseline", "baseline tuned"])
def test_training_step(timer, device, impl):
    batch = _batch(device)
    if impl == "ours":
        step, name = _ours(device), "emohrnet_fast.train step (resident + fused), fp32"
    elif impl == "ours bf16":
        step = _ours(device, precision="bf16")
        name = "emohrnet_fast.train step (resident + fused), bf16 autocast"
    else:
        step, name = _baseline(device, tuned=impl == "baseline tuned")
        name += ", fp32"
    for _ in range(2):  # warm-up: allocator, cuDNN autotuning, first DataLoader pass
        step()
    timer(
        step,
        workload=f"train emohrnet_small B={batch} {CLIP_SECONDS:g}-s clips",
        impl=name,
        clips=batch,
        baseline=impl == "baseline",
        repeat=3,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_step(timer, device, mode):
    """``TrainConfig(compile=True, compile_mode=mode)``: the model under torch.compile, and
    with "reduce-overhead" its forward and backward as CUDA graphs (the step is launch-bound
    on a GPU: 29.7 ms of wall time around 16 ms of kernels on an H200). CUDA only: compiling
    the backward takes minutes on 2 CPU cores."""
    if device == "cpu":
        pytest.skip("CUDA only (compile time on CPU)")
    step = _ours(device, compile=True, compile_mode=mode)
    for _ in range(3):  # compiles forward and backward
        step()
    timer(
        step,
        workload=f"train emohrnet_small B={_batch(device)} {CLIP_SECONDS:g}-s clips",
        impl=f"emohrnet_fast.train step, compile=True, compile_mode={mode!r}, fp32",
        clips=_batch(device),
        repeat=3,
    )
