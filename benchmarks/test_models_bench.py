"""Model throughput: forward (inference) and forward+backward clips/s per preset, eager beside
torch.compile and CUDA graphs (torch.compile mode="reduce-overhead"), fp32 and bf16 autocast
on CUDA; on a GPU also timm's hrnet_w18_small, the anchor EmoHRNet has to beat.

Inputs are each preset's default features for 4-s, 16-kHz clips (401 frames). CPU runs the
cheap cases only (2 cores): B=1 for every preset, B=64 forward for the small ones.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
from ef_testing import HAS_CUDA

from emohrnet_fast import models

PRESETS = [
    "emohrnet_small",
    "emohrnet_w18",
    "emohrnet_w32",
    "centerloss_cnn_spec",
    "centerloss_cnn_mfcc",
]
CPU_BATCH64 = {"emohrnet_small", "centerloss_cnn_mfcc"}
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]


def _cases():
    for name in PRESETS:
        for batch in (1, 64):
            for train in (False, True):
                if not (batch == 64 and (train or name not in CPU_BATCH64)):
                    yield pytest.param(
                        "cpu",
                        name,
                        batch,
                        train,
                        "fp32",
                        id=f"cpu-{name}-B{batch}-{'train' if train else 'infer'}",
                    )
                for dtype in ("fp32", "bf16"):
                    yield pytest.param(
                        "cuda",
                        name,
                        batch,
                        train,
                        dtype,
                        marks=CUDA,
                        id=f"cuda-{name}-B{batch}-{'train' if train else 'infer'}-{dtype}",
                    )


def _setup(device, name, batch, train, dtype):
    torch.manual_seed(0)
    model = models.create(name, num_classes=7).to(device).train(train)
    frontend = model.default_frontend
    x = torch.randn(batch, frontend.n_features, frontend.num_frames(64000), device=device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if dtype == "bf16"
        else contextlib.nullcontext()
    )
    workload = f"{name} B={batch} {'fwd+bwd' if train else 'inference'} {dtype}"
    return model, x, autocast, workload


def _step(model, x, train, autocast):
    if train:

        def run():
            with autocast:
                loss = model(x).logits.float().logsumexp(dim=-1).mean()
            loss.backward()
    else:

        def run():
            with torch.inference_mode(), autocast:
                model(x)

    return run


@pytest.mark.parametrize("device,name,batch,train,dtype", list(_cases()))
def test_eager(timer, device, name, batch, train, dtype):
    model, x, autocast, workload = _setup(device, name, batch, train, dtype)
    timer(
        _step(model, x, train, autocast),
        workload=workload,
        impl="eager",
        clips=batch,
        baseline=True,
        repeat=5,
    )


def _compiled_cases():
    """Compiled and CUDA-graph variants. Every compile of an HRNet costs about a minute, so by
    default only bf16 for the two presets users deploy (fits one device lease);
    EMOHRNET_BENCH_ALL_COMPILED=1 compiles the whole CUDA eager grid, both modes."""
    if os.environ.get("EMOHRNET_BENCH_ALL_COMPILED") == "1":
        for case in _cases():
            if case.values[0] == "cuda":
                for mode in ("default", "reduce-overhead"):
                    yield pytest.param(*case.values, mode, marks=CUDA, id=f"{case.id}-{mode}")
        return
    for name in ("emohrnet_small", "centerloss_cnn_mfcc"):
        for batch, train, mode in (
            (1, False, "reduce-overhead"),
            (64, False, "default"),
            (64, False, "reduce-overhead"),
            (64, True, "default"),
        ):
            kind = "train" if train else "infer"
            yield pytest.param(
                "cuda",
                name,
                batch,
                train,
                "bf16",
                mode,
                marks=CUDA,
                id=f"cuda-{name}-B{batch}-{kind}-bf16-{mode}",
            )


@pytest.mark.parametrize("device,name,batch,train,dtype,mode", list(_compiled_cases()))
def test_compiled(timer, device, name, batch, train, dtype, mode):
    model, x, autocast, workload = _setup(device, name, batch, train, dtype)
    compiled = torch.compile(model, mode=mode)
    run = _step(compiled, x, train, autocast)
    for _ in range(3):  # compile and record the graphs outside the timing
        run()
    impl = "torch.compile" if mode == "default" else "torch.compile + CUDA graphs"
    timer(run, workload=workload, impl=impl, clips=batch, repeat=5)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("device", ["cuda"])
@pytest.mark.parametrize(
    "impl",
    [
        "timm hrnet_w18_small (eager)",
        "emohrnet_small (eager)",
        "emohrnet_small (torch.compile + CUDA graphs)",
    ],
)
def test_timm_anchor(timer, device, impl):
    """The bar: emohrnet_small inference >= 2x timm hrnet_w18_small eager, B=64, 128 x 384."""
    _anchor(timer, device, impl, "anchor: B=64 inference fp32, 128 x 384", "timm")


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("device", ["cuda"])
@pytest.mark.parametrize(
    "impl",
    [
        "timm hrnet_w18_small (torch.compile + CUDA graphs)",
        "emohrnet_small (torch.compile + CUDA graphs)",
    ],
)
def test_compiled_timm_anchor(timer, device, impl):
    """The anchor with both sides compiled: what torch.compile alone gives timm's HRNet, so
    that emohrnet_small's compiled 2x against timm eager is read beside compiled against
    compiled (a minute of compiling each: GPU tier 2)."""
    workload = "anchor, both compiled: B=64 inference fp32, 128 x 384"
    _anchor(timer, device, impl, workload, "timm hrnet_w18_small (torch.compile")


def _anchor(timer, device: str, impl: str, workload: str, baseline_prefix: str) -> None:
    timm = pytest.importorskip("timm")
    x = torch.randn(64, 1, 128, 384, device=device)
    if impl.startswith("timm"):
        model = timm.create_model("hrnet_w18_small", in_chans=1, num_classes=7)
    else:
        model = models.create("emohrnet_small", num_classes=7)
    model = model.to(device).eval()
    if "CUDA graphs" in impl:
        model = torch.compile(model, mode="reduce-overhead")

    def run():
        with torch.inference_mode():
            model(x)

    for _ in range(3):
        run()
    timer(
        run,
        workload=workload,
        impl=impl,
        clips=64,
        baseline=impl.startswith(baseline_prefix),
        repeat=5,
    )
