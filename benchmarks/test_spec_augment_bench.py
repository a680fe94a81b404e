"""SpecAugment on (256, 1, 128, 401) features: ours beside the eager reference (CPU baseline)
and torchaudio's iid SpecAugment (CUDA baseline), same inputs, same run."""

from __future__ import annotations

import pytest
import torch
from conftest import CLIP_SECONDS
from ef_testing import DEVICES

from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import reference, spec_augment, spec_augment_

SHAPE = (256, 1, 128, 401)
WORKLOAD = "SpecAugment (256, 1, 128, 401), 2 freq masks <= 27, 2 time masks <= 40"
AUDIO_SECONDS = SHAPE[0] * CLIP_SECONDS
FLOOR_BYTES = 2 * 4 * SHAPE[0] * SHAPE[1] * SHAPE[2] * SHAPE[3]  # one read + one write


def _setup(device):
    spec = torch.randn(SHAPE, device=device)
    augment = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=40).train()
    masks = augment.draw(SHAPE[0], SHAPE[2], SHAPE[3], device)
    return spec, augment, masks


@pytest.mark.parametrize("device", DEVICES)
def test_ours_op(timer, device):
    spec, _, masks = _setup(device)
    timer(
        lambda: spec_augment(spec, masks),
        workload=WORKLOAD,
        impl="emohrnet_fast.ops.spec_augment (drawn masks)",
        audio_seconds=AUDIO_SECONDS,
        floor_bytes=FLOOR_BYTES,
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_ours_inplace(timer, device):
    spec, _, masks = _setup(device)
    timer(
        lambda: spec_augment_(spec, masks),
        workload=WORKLOAD,
        impl="emohrnet_fast.ops.spec_augment_ (in place)",
        audio_seconds=AUDIO_SECONDS,
        floor_bytes=FLOOR_BYTES,
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_ours_module(timer, device):
    spec, augment, _ = _setup(device)
    timer(
        lambda: augment(spec),
        workload=WORKLOAD,
        impl="SpecAugment module (draw + apply)",
        audio_seconds=AUDIO_SECONDS,
        floor_bytes=FLOOR_BYTES,
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_eager_reference(timer, device):
    spec, _, masks = _setup(device)
    timer(
        lambda: reference.spec_augment(spec, masks, check=False),
        workload=WORKLOAD,
        impl="eager reference (torch.where)",
        audio_seconds=AUDIO_SECONDS,
        baseline=device == "cpu",
        repeat=50,
        rounds=30,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_torchaudio(timer, device):
    torchaudio = pytest.importorskip("torchaudio")
    spec, _, _ = _setup(device)
    ta = torchaudio.transforms.SpecAugment(
        n_time_masks=2,
        time_mask_param=40,
        n_freq_masks=2,
        freq_mask_param=27,
        iid_masks=True,
        zero_masking=True,
    ).train()
    timer(
        lambda: ta(spec),
        workload=WORKLOAD,
        impl="torchaudio SpecAugment (iid)",
        audio_seconds=AUDIO_SECONDS,
        baseline=device == "cuda",
        repeat=50,
        rounds=30,
    )
