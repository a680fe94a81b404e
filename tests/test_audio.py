"""audio.load (soundfile) and audio.resample (soxr): formats, channels, rates, bad files."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import soundfile
import torch
from ef_testing import emodb_files, load_wav

from emohrnet_fast import audio


def _sine(frequency: float, sample_rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * math.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", None)])
def test_load_formats(tmp_path, fmt, subtype):
    wave = _sine(440, 16000)
    path = tmp_path / f"tone.{fmt.lower()}"
    soundfile.write(path, wave, 16000, format=fmt, subtype=subtype)
    loaded, sr = audio.load(path)
    assert sr == 16000 and loaded.shape == (1, wave.size) and loaded.dtype == torch.float32
    tolerance = 0.05 if fmt == "OGG" else 1e-3  # Vorbis is lossy
    assert (loaded[0] - torch.from_numpy(wave)).abs().max() < tolerance


def test_stereo_and_mono(tmp_path):
    left, right = _sine(440, 8000), _sine(660, 8000)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    both, _ = audio.load(path)
    assert both.shape == (2, left.size)
    torch.testing.assert_close(both[1], torch.from_numpy(right))
    mono, _ = audio.load(path, mono=True)
    torch.testing.assert_close(mono, torch.from_numpy((left + right) / 2))


def test_load_resamples(tmp_path):
    path = tmp_path / "tess.wav"
    soundfile.write(path, _sine(440, 24414), 24414)
    wave, sr = audio.load(path, 16000, mono=True)
    assert sr == 16000 and wave.shape == (round(0.5 * 24414 * 16000 / 24414),)


def test_matches_the_test_helper_on_emodb():
    (path,) = emodb_files(1)
    ours, sr = audio.load(path, mono=True)
    expected, expected_sr = load_wav(path)
    assert sr == expected_sr == 22050
    torch.testing.assert_close(ours, expected)


def test_resample_accuracy_and_length():
    wave = torch.from_numpy(_sine(1000, 48000))
    out = audio.resample(wave, 48000, 16000)
    assert out.shape == (8000,) and out.dtype == torch.float32
    expected = torch.from_numpy(_sine(1000, 16000))
    # Away from the edges (filter transients), the tone is reproduced closely.
    assert (out[200:-200] - expected[200:-200]).abs().max() < 1e-3


def test_resample_is_band_limited():
    # 12 kHz is above the 8 kHz Nyquist frequency of 16 kHz: decimation without an
    # anti-aliasing filter would fold it to 4 kHz at full amplitude.
    out = audio.resample(torch.from_numpy(_sine(12000, 48000)), 48000, 16000)
    rms = out[200:-200].pow(2).mean().sqrt().item()
    assert rms < 0.5 / math.sqrt(2) * 1e-3, f"aliased energy at {20 * math.log10(rms):.1f} dBFS"


def test_resample_batch_dtype_and_identity():
    wave = torch.randn(2, 3, 22050, dtype=torch.float64)
    out = audio.resample(wave, 22050, 16000)
    assert out.shape == (2, 3, 16000) and out.dtype == torch.float64
    torch.testing.assert_close(out[1, 2], audio.resample(wave[1, 2], 22050, 16000))
    assert audio.resample(wave, 16000, 16000) is wave
    assert audio.resample(torch.zeros(0), 22050, 16000).shape == (0,)


def test_resample_bad_arguments():
    wave = torch.zeros(100)
    with pytest.raises(ValueError, match=r"orig_sample_rate=0: expected a positive integer"):
        audio.resample(wave, 0, 16000)
    with pytest.raises(ValueError, match=r"new_sample_rate=16000.0: expected a positive integer"):
        audio.resample(wave, 8000, 16000.0)
    with pytest.raises(ValueError, match=r"quality='best': expected 'VHQ'"):
        audio.resample(wave, 8000, 16000, quality="best")
    with pytest.raises(ValueError, match=r"waveform: expected a floating tensor"):
        audio.resample(torch.zeros(100, dtype=torch.int16), 8000, 16000)


@pytest.mark.parametrize("declared", [0xFFFFFFFF, 0x7FFFF000])
def test_streamed_wav_with_a_placeholder_size_loads(tmp_path, declared):
    """Writers that cannot seek back leave a placeholder data size (0xFFFFFFFF; SoX writes
    0x7FFFF000): not a truncated file."""
    buffer = io.BytesIO()
    soundfile.write(buffer, _sine(440, 16000, 0.1), 16000, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    at = data.index(b"data") + 4
    data[at : at + 4] = struct.pack("<I", declared)
    (tmp_path / "piped.wav").write_bytes(bytes(data))
    waveform, rate = audio.load(tmp_path / "piped.wav")
    assert rate == 16000 and waveform.shape[-1] == 1600


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"path=.*missing.wav.*no such file"):
        audio.load(tmp_path / "missing.wav")
    buffer = io.BytesIO()
    soundfile.write(buffer, _sine(440, 16000), 16000, format="WAV")
    good = buffer.getvalue()
    cases = {
        "empty.wav": (b"", "undecodable"),
        "header.wav": (good[:30], "undecodable"),
        "cut.wav": (good[: len(good) // 2], "truncated"),
        "noise.flac": (b"fLaC" + bytes(100), "undecodable"),
    }
    for name, (content, kind) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(audio.AudioDecodeError, match=r"path=.*" + name) as error:
            audio.load(tmp_path / name)
        assert error.value.kind == kind, name
    silent = io.BytesIO()
    soundfile.write(silent, np.zeros(0, np.float32), 16000, format="WAV")
    (tmp_path / "silent.wav").write_bytes(silent.getvalue())
    with pytest.raises(audio.AudioDecodeError, match=r"zero-length audio"):
        audio.load(tmp_path / "silent.wav")
    soundfile.write(tmp_path / "one.wav", np.ones(1, np.float32) * 0.5, 48000)
    with pytest.raises(audio.AudioDecodeError, match=r"zero-length audio at 16000 Hz") as error:
        audio.load(tmp_path / "one.wav", 16000)  # one sample at 48 kHz: none at 16 kHz
    assert error.value.kind == "zero-length"
    soundfile.write(tmp_path / "nan.wav", np.full(10, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioDecodeError, match=r"non-finite samples"):
        audio.load(tmp_path / "nan.wav")
    with pytest.raises(ValueError, match=r"sample_rate=-1: expected a positive integer"):
        audio.load(tmp_path / "nan.wav", -1)
