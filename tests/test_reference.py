"""The pure-PyTorch reference and the Mel tables against librosa / numpy conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ef_testing import emodb_files, frame_relative_error, load_wav

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.ops import reference
from emohrnet_fast.ops.mel import dct_matrix, hz_to_mel, mel_filterbank, mel_to_hz, stft_window

LIBROSA_RTOL = 1e-5


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
@pytest.mark.parametrize(
    "sr,n_fft,n_mels,f_min,f_max",
    [
        (16000, 512, 96, 0.0, None),
        (16000, 400, 64, 0.0, None),
        (22050, 1024, 80, 50.0, 8000.0),
        (8000, 256, 40, 100.0, 3800.0),
        (24414, 2048, 128, 20.0, None),
    ],
)
def test_filterbank_matches_librosa(librosa, mel_scale, norm, sr, n_fft, n_mels, f_min, f_max):
    config = FrontEndConfig(
        sample_rate=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        f_min=f_min,
        f_max=f_max,
        mel_scale=mel_scale,
        norm=norm,
    )
    ours = mel_filterbank(config).numpy()
    theirs = librosa.filters.mel(
        sr=sr,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=f_min,
        fmax=f_max,
        htk=mel_scale == "htk",
        norm=norm,
        dtype=np.float64,
    ).T
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
def test_mel_scale_round_trip_and_librosa(librosa, mel_scale):
    freqs = torch.tensor([0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 8000.0, 11025.0])
    mels = hz_to_mel(freqs, mel_scale)
    expected = librosa.hz_to_mel(freqs.numpy().astype(np.float64), htk=mel_scale == "htk")
    np.testing.assert_allclose(mels.numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(mel_to_hz(mels, mel_scale), freqs.double(), rtol=1e-12, atol=1e-9)


def test_window_is_periodic_hann_centred():
    config = FrontEndConfig(n_fft=400, win_length=300, n_mels=None)
    win = stft_window(config)
    assert win.shape == (400,)
    torch.testing.assert_close(
        win[50:350], torch.hann_window(300, periodic=True, dtype=torch.float64)
    )
    assert win[:50].abs().sum() == 0 and win[350:].abs().sum() == 0


def test_dct_is_orthonormal_dct2():
    dct = dct_matrix(40, 40)
    torch.testing.assert_close(dct.t() @ dct, torch.eye(40, dtype=torch.float64))
    x = torch.randn(40, dtype=torch.float64)
    scipy_fft = pytest.importorskip("scipy.fft")
    np.testing.assert_allclose(
        (dct.t() @ x).numpy(), scipy_fft.dct(x.numpy(), type=2, norm="ortho")
    )


@pytest.mark.parametrize("length", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("pad", [1, 5, 256])
def test_reflect_pad_matches_numpy(length, pad):
    x = torch.randn(2, length)
    expected = np.pad(x.numpy(), ((0, 0), (pad, pad)), mode="reflect")
    np.testing.assert_array_equal(reference.reflect_pad(x, pad).numpy(), expected)


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(n_fft=400, n_mels=64, mel_scale="htk"),
        dict(n_fft=400, win_length=320, n_mels=64, norm="slaney", power=1.0),
        dict(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=128, f_min=30.0, f_max=8000.0),
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults",
)
def test_reference_mel_power_matches_librosa(librosa, options):
    config = FrontEndConfig(output="power", **options)
    clips = [load_wav(path)[0] for path in emodb_files(2)]
    x = torch.stack([clips[0], clips[1], torch.randn_like(clips[0])])
    ours = reference.log_mel(x, config)
    theirs = librosa.feature.melspectrogram(
        y=x.numpy(),
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window="hann",
        center=True,
        pad_mode="reflect",
        power=config.power,
        n_mels=config.n_mels,
        fmin=config.f_min,
        fmax=config.f_max,
        htk=config.mel_scale == "htk",
        norm=config.norm,
    )
    assert ours.shape == theirs.shape
    rel = frame_relative_error(ours, torch.from_numpy(theirs))
    assert rel <= LIBROSA_RTOL, f"reference vs librosa: {rel:.3g} of frame max"


def test_reference_db_matches_librosa_power_to_db(librosa):
    config = FrontEndConfig(n_fft=400, n_mels=64, top_db=None)
    x = load_wav(emodb_files(1)[0])[0]
    power = reference.log_mel(x, config.replace(output="power"))
    ours = reference.log_mel(x, config)
    theirs = librosa.power_to_db(power.numpy(), ref=1.0, amin=config.amin, top_db=None)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-4)


def test_magnitude_db_and_per_clip_top_db_match_librosa_amplitude_to_db(librosa):
    """power=1.0 gives 20 log10 (librosa's amplitude_to_db, torchaudio's "magnitude"), with the
    top_db floor under each clip's own peak (librosa clamps the array it is given: one clip)."""
    config = FrontEndConfig(n_fft=400, n_mels=64, power=1.0, top_db=60.0)
    clips = [load_wav(path)[0] for path in emodb_files(2)]
    ours = reference.log_mel(torch.stack(clips), config)
    for clip, got in zip(clips, ours, strict=True):
        magnitude = reference.log_mel(clip, config.replace(output="power")).numpy()
        theirs = librosa.amplitude_to_db(magnitude, ref=1.0, amin=config.amin, top_db=60.0)
        np.testing.assert_allclose(got.numpy(), theirs, atol=1e-4)


def test_mfcc_is_the_dct_of_the_clamped_db_mel_as_librosa(librosa):
    """MFCC order: Mel power -> dB -> top_db floor -> orthonormal DCT-II over the bands, as
    librosa.feature.mfcc(S=power_to_db(mel, top_db=80), norm="ortho") computes it."""
    config = FrontEndConfig(n_fft=512, n_mels=40, n_mfcc=13, top_db=80.0)
    clip = load_wav(emodb_files(1)[0])[0]
    ours = reference.log_mel(clip, config)
    mel = reference.log_mel(clip, config.replace(output="power", n_mfcc=None)).numpy()
    db = librosa.power_to_db(mel, ref=1.0, amin=config.amin, top_db=80.0)
    theirs = librosa.feature.mfcc(S=db, n_mfcc=13, dct_type=2, norm="ortho")
    np.testing.assert_allclose(ours.numpy(), theirs, atol=2e-3)


def test_tables_first_built_in_inference_mode_still_give_gradients():
    # A config of its own, so this call builds (and caches) its tables.
    config = FrontEndConfig(n_mels=41, n_fft=256, hop_length=97)
    with torch.inference_mode():
        reference.log_mel(torch.randn(1000), config)
    waveform = torch.randn(1000, requires_grad=True)
    reference.log_mel(waveform, config).sum().backward()
    assert waveform.grad is not None and torch.isfinite(waveform.grad).all()
