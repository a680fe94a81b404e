"""Bad input gets a clear error before any pointer reaches C++; odd-but-valid input works."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ef_testing import DEVICES

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.features import LogMel
from emohrnet_fast.ops import log_mel, reference
from emohrnet_fast.ops.mel import build_tables


@pytest.mark.parametrize("dtype", [torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_dtype_is_rejected(dtype):
    with pytest.raises(TypeError, match=r"waveform: expected a floating-point tensor, got torch\."):
        log_mel(torch.zeros(1000, dtype=dtype))


def test_complex_dtype_is_rejected():
    with pytest.raises(
        TypeError, match="waveform: expected a real floating-point tensor, got complex"
    ):
        log_mel(torch.zeros(1000, dtype=torch.complex64))


def test_non_tensor_is_rejected():
    with pytest.raises(TypeError, match=r"waveform: expected a torch\.Tensor, got ndarray"):
        log_mel(np.zeros(1000, dtype=np.float32))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_float_dtypes_are_computed_in_float32(dtype):
    x = torch.randn(2, 4000)
    out = log_mel(x.to(dtype))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, log_mel(x.to(dtype).float()), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 1000)])
def test_empty_input_is_rejected(shape):
    with pytest.raises(ValueError, match=r"waveform: expected at least one sample, got shape"):
        log_mel(torch.zeros(shape))


def test_zero_dim_input_is_rejected():
    with pytest.raises(
        ValueError, match=r"waveform: expected shape \(\.\.\., time\), got a 0-d tensor"
    ):
        log_mel(torch.tensor(1.0))


def test_requires_grad_points_to_reference():
    x = torch.randn(1000, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"not differentiable; use emohrnet_fast\.ops\.ref"):
        log_mel(x)
    reference.log_mel(x).sum().backward()  # the documented alternative works
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_config_must_be_a_front_end_config():
    with pytest.raises(TypeError, match="config: expected FrontEndConfig, got dict"):
        log_mel(torch.randn(1000), {"n_fft": 512})


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_and_expanded_inputs(device):
    config = FrontEndConfig(n_fft=400, n_mels=64)
    base = torch.randn(4000, 3, device=device)
    transposed = base.t()  # (3, 4000), stride (1, 3)
    assert not transposed.is_contiguous()
    torch.testing.assert_close(
        log_mel(transposed, config), log_mel(transposed.contiguous(), config)
    )
    expanded = base[:, 0].expand(5, 4000)  # stride 0 on the batch axis
    out = log_mel(expanded, config)
    torch.testing.assert_close(out, log_mel(base[:, 0].contiguous(), config).expand(5, -1, -1))
    strided = torch.randn(2, 8000, device=device)[:, ::2]
    torch.testing.assert_close(log_mel(strided, config), log_mel(strided.contiguous(), config))


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_propagate_without_crashing(device):
    config = FrontEndConfig(n_fft=400, hop_length=160, n_mels=64, top_db=None)
    x = torch.randn(2, 16000, device=device)
    clean = log_mel(x, config)
    x[0, 8000] = float("nan")
    x[1, 8000] = float("inf")
    out = log_mel(x, config)
    touched = [t for t in range(out.shape[-1]) if abs(t * 160 - 8000) < 200]
    far = [t for t in range(out.shape[-1]) if abs(t * 160 - 8000) > 400]
    assert torch.isnan(out[0][:, touched]).any()
    assert not torch.isfinite(out[1][:, touched]).all()
    torch.testing.assert_close(out[:, :, far], clean[:, :, far])
    # With top_db, NaN frames stay NaN and the rest is clamped as without them.
    out_db = log_mel(x[:1], FrontEndConfig(n_fft=400, n_mels=64))
    assert torch.isnan(out_db[0][:, touched]).any() and torch.isfinite(out_db[0][:, far]).all()


@pytest.mark.parametrize("device", DEVICES)
def test_huge_and_silent_inputs(device):
    config = FrontEndConfig(n_fft=400, n_mels=64)
    silent = log_mel(torch.zeros(1, 4000, device=device), config)
    assert torch.all(silent == 10 * math.log10(config.amin))
    loud = log_mel(torch.full((1, 4000), 1e15, device=device), config)
    assert torch.isfinite(loud).all()


def test_tables_on_the_wrong_device_are_rejected():
    config = FrontEndConfig(n_fft=400, n_mels=64)
    tables = build_tables(config).to("meta")
    with pytest.raises(ValueError, match=r"tables.window is on meta but the input is on cpu; move"):
        log_mel(torch.randn(4000), config, tables=tables)


def test_tables_for_another_config_are_rejected():
    tables = build_tables(FrontEndConfig(n_fft=400, n_mels=64))
    with pytest.raises(ValueError, match="tables were built for another n_fft"):
        log_mel(torch.randn(4000), FrontEndConfig(n_fft=512, n_mels=64), tables=tables)
    with pytest.raises(ValueError, match="tables give 64 bands / 64 outputs, config wants 40 / 40"):
        log_mel(torch.randn(4000), FrontEndConfig(n_fft=400, n_mels=40), tables=tables)


def test_module_on_wrong_device_says_how_to_fix():
    module = LogMel(n_fft=400, n_mels=64)
    for name, buf in module.named_buffers():
        setattr(module, name, buf.to("meta"))
    with pytest.raises(ValueError, match=r"\.to\(device\)"):
        module(torch.randn(4000))


@pytest.mark.parametrize(
    "fields,pattern",
    [
        (dict(n_fft=511), r"n_fft=511: expected an even integer from 2 to 8192"),
        (dict(n_fft=0), r"n_fft=0: expected an even integer"),
        (dict(n_fft=16384), r"n_fft=16384: expected an even integer from 2 to 8192"),
        (dict(n_fft=512.0), r"n_fft=512.0: expected an even integer"),
        (dict(hop_length=0), r"hop_length=0: expected an integer >= 1"),
        (dict(win_length=600), r"win_length=600: expected None or an integer from 1 to n_fft=512"),
        (dict(f_max=9000.0), r"f_max=9000.0: expected None or in \(0, sample_rate / 2 = 8000\]"),
        (dict(f_min=8000.0), r"f_min=8000.0: expected in \[0, f_max = 8000\)"),
        (dict(f_min=-1.0), r"f_min=-1.0: expected in \[0"),
        (dict(sample_rate=0), r"sample_rate=0: expected a positive integer"),
        (dict(n_mels=0), r"n_mels=0: expected None"),
        (dict(power=3.0), r"power=3.0: expected 1.0 \(magnitude\) or 2.0 \(power\)"),
        (dict(norm="area"), r"norm='area': expected None or 'slaney'"),
        (dict(mel_scale="bark"), r"mel_scale='bark': expected 'htk' or 'slaney'"),
        (dict(output="dB"), r"output='dB': expected 'power', 'log' or 'db'"),
        (dict(top_db=-1.0), r"top_db=-1.0: expected None or a number >= 0"),
        (dict(eps=0.0), r"eps=0.0: expected a number > 0"),
        (dict(amin=0.0), r"amin=0.0: expected a number > 0"),
        (
            dict(n_mfcc=200),
            r"n_mfcc=200: expected None or an integer from 1 to the number of bands \(128\)",
        ),
        (dict(n_mfcc=13, output="power"), r"output='power': expected 'log' or 'db' when n_mfcc"),
        (
            dict(n_fft=64, n_mels=128),
            r"Mel band 0 \(0.0-[0-9.]+ Hz\) contains no FFT bin "
            r"\(bins are 250.00 Hz apart with n_fft=64\)",
        ),
        (
            dict(n_mels=128, mel_scale="htk"),
            r"Mel band 0 \(0.0-27.9 Hz\) contains no FFT bin .* 1 of n_mels=128 bands are empty",
        ),
    ],
)
def test_invalid_config_is_rejected(fields, pattern):
    with pytest.raises(ValueError, match=pattern):
        FrontEndConfig(**fields)


def test_replace_rejects_unknown_fields():
    with pytest.raises(TypeError, match=r"FrontEndConfig has no field\(s\) \['n_mel'\]"):
        FrontEndConfig().replace(n_mel=64)
