"""The nn.Module front-ends, the custom op's registration and the build info."""

from __future__ import annotations

import pytest
import torch
from ef_testing import DEVICES, HAS_CUDA

import emohrnet_fast
from emohrnet_fast import FrontEndConfig
from emohrnet_fast._extension import _C
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.features import MFCC, FrontEnd, LogMel, Spectrogram
from emohrnet_fast.ops import log_mel, reference
from emohrnet_fast.ops.log_mel import _log_mel_op, op_arguments
from emohrnet_fast.ops.mel import cached_tables


def test_default_config_is_the_documented_preset():
    c = FrontEndConfig()
    assert (c.sample_rate, c.n_fft, c.hop_length, c.n_mels, c.output, c.top_db) == (
        16000,
        512,
        160,
        128,
        "db",
        80.0,
    )
    assert c.num_frames(64000) == 401 and c.n_features == 128


@pytest.mark.parametrize("device", DEVICES)
def test_modules_match_functional_op(device):
    x = torch.randn(3, 8000, device=device)
    cases = [
        (LogMel(n_mels=64).to(device), FrontEndConfig(n_mels=64), (3, 64, 51)),
        (
            Spectrogram(output="power").to(device),
            FrontEndConfig(n_mels=None, output="power"),
            (3, 257, 51),
        ),
        (MFCC(n_mfcc=13).to(device), FrontEndConfig(n_mfcc=13), (3, 13, 51)),
    ]
    for module, config, shape in cases:
        out = module(x)
        assert out.shape == shape
        assert module.config == config
        torch.testing.assert_close(out, log_mel(x, config), rtol=0, atol=0)


def test_module_takes_a_config_and_overrides():
    base = FrontEndConfig(sample_rate=22050, n_fft=1024, hop_length=256)
    module = LogMel(base, n_mels=80)
    assert module.config == base.replace(n_mels=80)
    assert "n_mels=80" in repr(module)
    assert module.state_dict() == {}  # constants are rebuilt, never saved
    with pytest.raises(ValueError, match="LogMel needs n_mels set"):
        LogMel(n_mels=None)
    with pytest.raises(TypeError, match="no field"):
        FrontEnd(n_mel=40)


def test_module_buffers_move_with_to():
    module = LogMel(n_mels=64)
    assert all(buf.device.type == "cpu" for buf in module.buffers())
    module.to("meta")
    assert all(buf.device.type == "meta" for buf in module.buffers())


@pytest.mark.parametrize("cast", ["double", "half", "bfloat16"])
def test_dtype_casts_keep_the_float32_tables(cast):
    """A model cast with .double() / .half() carries its front-end along: the tables stay
    float32 (what the kernels read) and the features are unchanged."""
    waveform = torch.randn(2, 1600, generator=torch.Generator().manual_seed(0))
    module = MFCC()
    cast_module = getattr(MFCC(), cast)()
    assert all(t.dtype in (torch.float32, torch.int32) for t in cast_module.tables())
    assert torch.equal(cast_module(waveform), module(waveform))


def test_tables_are_cached_per_config_and_device():
    config = FrontEndConfig(n_mels=40)
    cpu = torch.device("cpu")

    def same_tensors(a, b):
        return all(x is y for x, y in zip(a, b, strict=True))

    assert same_tensors(cached_tables(config, cpu), cached_tables(FrontEndConfig(n_mels=40), cpu))
    assert not same_tensors(
        cached_tables(config, cpu), cached_tables(config.replace(n_mels=41), cpu)
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "config",
    [
        FrontEndConfig(n_fft=400, n_mels=64),
        FrontEndConfig(n_fft=400, n_mels=64, n_mfcc=20),
        FrontEndConfig(n_fft=400, n_mels=None, output="log"),
        FrontEndConfig(n_fft=400, n_mels=64, top_db=None, power=1.0),
    ],
    ids=["db", "mfcc", "linear-log", "magnitude-no-top-db"],
)
def test_opcheck(device, config):
    tables = cached_tables(config, torch.device(device))
    args = (torch.randn(2, 3000, device=device), *tables)
    kwargs = op_arguments(config)
    torch.library.opcheck(_log_mel_op, args, kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_with_fused_masks(device):
    config = FrontEndConfig(n_fft=400, n_mels=64)
    masks = SpecAugment(freq_masks=2, freq_width=20, time_masks=2, time_width=5).draw(
        2, config.n_features, config.num_frames(3000), device
    )
    args = (torch.randn(2, 3000, device=device), *cached_tables(config, torch.device(device)))
    kwargs = op_arguments(config) | {
        "freq_masks": masks.freq,
        "time_masks": masks.time,
        "mask_values": masks.values,
    }
    torch.library.opcheck(_log_mel_op, args, kwargs)


@pytest.mark.slow
def test_torch_compile_fullgraph_with_fused_masks():
    config = FrontEndConfig(n_fft=400, n_mels=40)
    x = torch.randn(3, 8000)
    masks = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=8).draw(
        3, config.n_features, config.num_frames(8000)
    )
    compiled = torch.compile(lambda x, m: log_mel(x, config, augment=m), fullgraph=True)
    torch.testing.assert_close(compiled(x, masks), log_mel(x, config, augment=masks))


@pytest.mark.slow
def test_torch_compile_fullgraph():
    module = LogMel(n_fft=400, n_mels=64)
    config = FrontEndConfig(n_fft=400, n_mels=40, n_mfcc=13)  # functional path, cold cache

    def pipeline(x):
        return module(x).mean(dim=-1) * 2.0, log_mel(x, config)

    compiled = torch.compile(pipeline, fullgraph=True)
    for x in (torch.randn(3, 8000), torch.randn(2, 5001)):  # a new length re-traces
        for got, expected in zip(compiled(x), pipeline(x), strict=True):
            torch.testing.assert_close(got, expected)


def test_info_reports_the_build():
    info = emohrnet_fast.info()
    assert info["version"] == emohrnet_fast.__version__
    assert info["build"]["cuda"] == _C.has_cuda()
    assert {"log_mel", "spec_augment"} <= set(info["kernels"]["cpu"])
    assert info["devices"][0] == "cpu"
    assert (len(info["devices"]) > 1) == HAS_CUDA
    if _C.has_cuda():
        archs = info["build"]["cuda_architectures"].split(",")
        assert archs and all(arch.split("-")[0].isdigit() for arch in archs), archs


def test_cuda_query_never_crashes_without_a_gpu():
    count = _C.cuda_device_count()
    assert count >= 0
    if not torch.cuda.is_available():
        assert count == 0


def test_reference_is_differentiable():
    """The documented way to gradients with respect to the waveform: correct ones (float64
    gradcheck on a tiny front-end, a clip shorter than n_fft // 2 included), not just any."""
    x = torch.randn(2, 4000, dtype=torch.float32, requires_grad=True)
    reference.log_mel(x, FrontEndConfig(n_fft=400, n_mels=64, output="log")).sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    config = FrontEndConfig(sample_rate=800, n_fft=16, hop_length=4, n_mels=4, output="log")
    for length in (40, 5):
        wave = torch.randn(1, length, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(
            lambda w: reference.log_mel(w, config, dtype=torch.float64), (wave,)
        )
