"""SpecAugment on (256, 1, 128, 401) features: ours beside the eager reference (CPU baseline)
and torchaudio's iid SpecAugment (CUDA baseline), same inputs and the same seeded masks, same
run. The in-place op has its own eager baseline (a dense mask and ``masked_fill_``).

Memory floors: the out-of-place op must read the input and write the output (the bar of issue
#4 counts both in full); the in-place op need only write the masked cells."""

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
    generator = torch.Generator(device=device).manual_seed(0)
    spec = torch.randn(SHAPE, device=device, generator=generator)
    augment = SpecAugment(freq_masks=2, freq_width=27, time_masks=2, time_width=40).train()
    masks = augment.draw(SHAPE[0], SHAPE[2], SHAPE[3], device, generator=generator)
    return spec, augment, masks


def _masked_bytes(masks) -> int:
    """What an in-place masking must write: the covered cells, nothing else."""
    covered = int(reference.dense_mask(masks, SHAPE[2], SHAPE[3]).sum())
    return 4 * covered * SHAPE[1]


def _time(timer, fn, workload: str, impl: str, **options) -> None:
    """Every row of this file: the workload's audio, 30 rounds of 50 calls."""
    timer(
        fn,
        workload=workload,
        impl=impl,
        audio_seconds=AUDIO_SECONDS,
        repeat=50,
        rounds=30,
        **options,
    )


def _eager_inplace(spec, masks) -> None:
    """In place as a user writes it: the dense mask, then masked_fill_ (zero fill, the
    default mask value, as the drawn masks have)."""
    mask = reference.dense_mask(masks, SHAPE[2], SHAPE[3])[:, None]
    spec.masked_fill_(mask, 0.0)


@pytest.mark.parametrize("device", DEVICES)
def test_ours_op(timer, device):
    spec, _, masks = _setup(device)
    _time(
        timer,
        lambda: spec_augment(spec, masks),
        WORKLOAD,
        "emohrnet_fast.ops.spec_augment (drawn masks)",
        floor_bytes=FLOOR_BYTES,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_ours_inplace(timer, device):
    spec, _, masks = _setup(device)
    _time(
        timer,
        lambda: spec_augment_(spec, masks),
        WORKLOAD + ", in place",
        "emohrnet_fast.ops.spec_augment_ (in place)",
        floor_bytes=_masked_bytes(masks),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_eager_inplace(timer, device):
    spec, _, masks = _setup(device)
    _time(
        timer,
        lambda: _eager_inplace(spec, masks),
        WORKLOAD + ", in place",
        "eager in place (dense mask + masked_fill_)",
        baseline=True,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_ours_module(timer, device):
    spec, augment, _ = _setup(device)
    _time(
        timer,
        lambda: augment(spec),
        WORKLOAD,
        "SpecAugment module (draw + apply)",
        floor_bytes=FLOOR_BYTES,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_eager_reference(timer, device):
    spec, _, masks = _setup(device)
    _time(
        timer,
        lambda: reference.spec_augment(spec, masks, check=False),
        WORKLOAD,
        "eager reference (torch.where)",
        baseline=device == "cpu",
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
    _time(
        timer,
        lambda: ta(spec),
        WORKLOAD,
        "torchaudio SpecAugment (iid)",
        baseline=device == "cuda",
    )
