"""The front-end and SpecAugment against torchaudio, whose conventions FrontEndConfig follows.

torchaudio is not installed in CI (no CPU build on our machines); these run on the GPU machine
and in any environment that has it, e.g. a CPU venv with torch 2.9.1 + torchaudio 2.9.
"""

from __future__ import annotations

import pytest
import torch
from ef_testing import (
    DEVICES,
    emodb_files,
    frame_relative_error,
    load_wav,
    torchaudio_frontend,
)

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import MaskParams, log_mel, reference, spec_augment

torchaudio = pytest.importorskip("torchaudio")

# Both sides compute in float32 with different FFTs and sums: measured (torchaudio 2.9.1, CPU)
# at most 1.3e-3 dB on EmoDB speech and 9e-6 of each frame's maximum in the power domain.
DB_ATOL = 5e-3
POWER_RTOL = 1e-4

CONFIGS = {
    "preset": FrontEndConfig(),
    "n_fft 400, 64 htk": FrontEndConfig(n_fft=400, n_mels=64, mel_scale="htk"),
    "window 300, band edges, slaney norm": FrontEndConfig(
        win_length=300, hop_length=128, n_mels=80, f_min=50.0, f_max=7000.0, norm="slaney"
    ),
    "magnitude dB": FrontEndConfig(power=1.0, n_mels=64),
    "no top_db": FrontEndConfig(top_db=None),
    "mel power": FrontEndConfig(output="power"),
    "spectrogram power": FrontEndConfig(n_mels=None, output="power"),
    "mfcc 40 of 64": FrontEndConfig(n_mels=64, n_mfcc=40),
}


def per_example(config: FrontEndConfig, wave: torch.Tensor) -> torch.Tensor:
    """torchaudio on ``(B, 1, time)``: its top_db clamp is then per example, as ours."""
    frontend, _ = torchaudio_frontend(config, str(wave.device))
    return frontend(wave[:, None]).squeeze(1)


def assert_same_features(ours: torch.Tensor, theirs: torch.Tensor, config: FrontEndConfig):
    assert ours.shape == theirs.shape
    if config.output == "power":
        assert frame_relative_error(ours, theirs) < POWER_RTOL
    else:
        torch.testing.assert_close(ours, theirs, rtol=0, atol=DB_ATOL)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("op", [log_mel, reference.log_mel], ids=["kernel", "reference"])
def test_matches_torchaudio_on_noise(device, name, op):
    config = CONFIGS[name]
    # Loudness over 50 dB apart, and a length that is not a multiple of the hop.
    gain = torch.tensor([1.0, 0.003, 3.0])[:, None]
    wave = (torch.randn(3, 2 * 16000 + 37) * gain).to(device)
    assert_same_features(op(wave, config), per_example(config, wave), config)


@pytest.mark.parametrize("name", ["preset", "mfcc 40 of 64"])
def test_matches_torchaudio_on_speech(name):
    for path in emodb_files(3):
        wave, rate = load_wav(path)
        config = CONFIGS[name].replace(sample_rate=rate)
        theirs = per_example(config, wave[None])
        assert_same_features(log_mel(wave[None], config), theirs, config)


def test_top_db_is_per_example_where_torchaudio_clamps_the_batch():
    config = FrontEndConfig()
    loud, quiet = torch.randn(16000), 1e-3 * torch.randn(16000)
    batch = torch.stack([loud, quiet])
    frontend, _ = torchaudio_frontend(config, "cpu")
    ours = log_mel(batch, config)
    alone = log_mel(quiet[None], config)[0]
    torch.testing.assert_close(ours[1], alone)
    # torchaudio's (B, time) batch shares one floor, 80 dB below the loud clip's maximum,
    # which clamps the quiet clip (60 dB down) 20 dB above its own floor.
    theirs = frontend(batch)
    shared_floor = ours[0].max() - config.top_db
    torch.testing.assert_close(theirs[1].min(), shared_floor, rtol=0, atol=DB_ATOL)
    assert shared_floor > alone.min() + 10
    torch.testing.assert_close(ours[0], theirs[0], rtol=0, atol=DB_ATOL)


def test_empty_mel_bands_are_an_error_where_torchaudio_warns():
    with pytest.warns(UserWarning, match="all zero values"):
        torchaudio.transforms.MelSpectrogram(16000, n_fft=512, n_mels=128, mel_scale="htk")
    with pytest.raises(ValueError, match="band 0"):
        FrontEndConfig(mel_scale="htk")


def test_short_clips_work_where_torchaudio_reflect_padding_fails():
    config = FrontEndConfig()
    short = torch.randn(1, config.n_fft // 2)
    with pytest.raises(RuntimeError):
        per_example(config, short)
    expected_frames = 1 + short.shape[-1] // config.hop_length
    assert log_mel(short, config).shape == (1, config.n_mels, expected_frames)
    # One sample more and torchaudio pads as we do.
    longer = torch.randn(1, config.n_fft // 2 + 1)
    torch.testing.assert_close(
        log_mel(longer, config), per_example(config, longer), rtol=0, atol=DB_ATOL
    )


def masked_ranges(masked: torch.Tensor, axis: int) -> torch.Tensor:
    """(B, 1, 2) int32 ``[start, end)`` of the rows (``axis=-2``) or columns (``-1``) of each
    example that hold the mask value (NaN), or an empty range."""
    hit = torch.isnan(masked[:, 0]).all(dim=-1 if axis == -2 else -2)  # (B, axis length)
    ranges = torch.zeros(masked.shape[0], 1, 2, dtype=torch.int32)
    for b, row in enumerate(hit):
        where = row.nonzero().flatten()
        if len(where):
            start, end = int(where[0]), int(where[-1]) + 1
            assert row[start:end].all(), "torchaudio masks are contiguous"
            ranges[b, 0] = torch.tensor([start, end])
    return ranges


@pytest.mark.parametrize("axis", [-2, -1], ids=["frequency", "time"])
def test_spec_augment_applies_torchaudio_iid_masks_identically(axis):
    """torchaudio draws one mask per example (``iid_masks=True``); the ranges it masked, given
    to our op, mask exactly the same elements."""
    torch.manual_seed(0)
    features = torch.randn(64, 1, 128, 201)
    masking = (
        torchaudio.transforms.FrequencyMasking(27, iid_masks=True)
        if axis == -2
        else torchaudio.transforms.TimeMasking(40, iid_masks=True)
    )
    theirs = masking(features, mask_value=float("nan"))
    ranges = masked_ranges(theirs, axis)
    assert (ranges[:, 0, 1] > ranges[:, 0, 0]).sum() > 48  # most examples masked somewhere
    assert len({tuple(r) for r in ranges[:, 0].tolist()}) > 32  # independently per example
    empty = torch.zeros(64, 0, 2, dtype=torch.int32)
    masks = MaskParams(
        freq=ranges if axis == -2 else empty,
        time=ranges if axis == -1 else empty,
        values=torch.full((64,), float("nan")),
    )
    torch.testing.assert_close(spec_augment(features, masks), theirs, equal_nan=True)


def test_spec_augment_widths_against_torchaudio():
    """torchaudio's docstring says widths are uniform in [0, mask_param], its code takes
    floor(U * mask_param), which stops at mask_param - 1; ours reach the width, as the issue and
    the docstring say. With that one-off, both width distributions agree."""
    torch.manual_seed(0)
    width, examples = 9, 20000
    features = torch.randn(examples, 1, 64, 50)
    theirs = masked_ranges(
        torchaudio.transforms.FrequencyMasking(width, iid_masks=True)(
            features, mask_value=float("nan")
        ),
        -2,
    )
    ours = SpecAugment(freq_masks=1, freq_width=width - 1, time_masks=0).draw(examples, 64, 50)
    counts = {}
    for name, ranges in (("torchaudio", theirs), ("ours", ours.freq)):
        widths = (ranges[:, 0, 1] - ranges[:, 0, 0]).long()
        counts[name] = torch.bincount(widths, minlength=width).float()
        assert len(counts[name]) == width  # widths 0 ... width - 1, never more
    expected = examples / width
    # Each count is binomial(20000, 1/9): std ~42; 5 std apart would be a different law.
    assert (counts["torchaudio"] - expected).abs().max() < 5 * expected**0.5
    assert (counts["ours"] - expected).abs().max() < 5 * expected**0.5
