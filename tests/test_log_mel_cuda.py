"""CUDA-only behaviour of the fused front-end: streams, graph capture, grid limits, device
checks. Skipped without a usable GPU (run on the device: see tests/gpu/run_device.sh)."""

from __future__ import annotations

import pytest
import torch
from ef_testing import HAS_CUDA, POWER_RTOL, frame_relative_error

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.ops import log_mel, reference
from emohrnet_fast.ops.mel import cached_tables

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]


def test_matches_cpu_kernel():
    config = FrontEndConfig()
    x = torch.randn(5, 24001)
    gpu = log_mel(x.cuda(), config).cpu()
    assert (gpu - log_mel(x, config)).abs().max() <= 1e-3


def test_runs_on_the_callers_stream():
    config = FrontEndConfig(n_mfcc=20)
    x = torch.randn(4, 16000, device="cuda")
    expected = log_mel(x, config)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = log_mel(x, config)
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize("options", [dict(), dict(n_mfcc=20), dict(top_db=None)])
def test_cuda_graph_capture_and_replay(options):
    config = FrontEndConfig(n_fft=400, n_mels=64, **options)
    static_x = torch.randn(8, 16000, device="cuda")
    cached_tables(config, static_x.device)  # built before capture: no allocation inside
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        log_mel(static_x, config)  # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = log_mel(static_x, config)
    fresh = torch.randn(8, 16000, device="cuda")
    static_x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(static_out, log_mel(fresh, config), rtol=0, atol=0)


def test_batch_beyond_the_grid_y_limit():
    config = FrontEndConfig(n_fft=256, hop_length=128, n_mels=32)
    x = torch.randn(70_000, 300, device="cuda")
    out = log_mel(x, config)
    expected = reference.log_mel(x[-5:], config)
    assert (out[-5:] - expected).abs().max() <= 1e-3
    assert (out[:5] - reference.log_mel(x[:5], config)).abs().max() <= 1e-3


@pytest.mark.parametrize("n_fft", [4096, 8192])
def test_large_ffts_use_more_shared_memory(n_fft):
    config = FrontEndConfig(n_fft=n_fft, hop_length=n_fft // 4, n_mels=None, output="power")
    x = torch.randn(2, 3 * n_fft + 1, device="cuda")
    rel = frame_relative_error(log_mel(x, config), reference.log_mel(x, config))
    assert rel <= POWER_RTOL["cuda"], rel


def test_long_audio():
    config = FrontEndConfig()
    x = torch.randn(1, 16000 * 600, device="cuda")  # ten minutes, 60 001 frames
    out = log_mel(x, config)
    assert out.shape == (1, 128, 60001) and torch.isfinite(out).all()
    head = x[:, : 16000 * 10]
    assert (log_mel(head, config) - reference.log_mel(head, config)).abs().max() <= 1e-3


def test_cpu_tables_with_cuda_input_are_rejected():
    config = FrontEndConfig(n_mels=64)
    tables = cached_tables(config, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"tables\.window is on cpu but the input is on cuda:0"):
        log_mel(torch.randn(4000, device="cuda"), config, tables=tables)


def test_non_default_device_index():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x = torch.randn(2, 8000, device="cuda:1")
    out = log_mel(x)
    assert out.device == x.device
    torch.testing.assert_close(out.cpu(), log_mel(x.cpu()), rtol=0, atol=1e-3)
