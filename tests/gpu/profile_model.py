"""Where EmoHRNet-small's GPU time goes: torch.profiler's CUDA kernels, kernel fuse against the
eager (reference) fuse, for inference at B=256 (the Predictor throughput case: 2-s clips at
16 kHz, 128 Mel bands x 201 frames) and a training step (forward + backward) at B=64; then
``Predictor.probabilities`` on the same 256 clips and on one, with the CPU ops that cost it
most. The kernel fuse also runs in channels_last, and for inference with its BatchNorms
folded.

python3 -P tests/gpu/profile_model.py   # tables on stdout; needs a CUDA device

For each case and fuse: wall ms per iteration (synchronised), the summed CUDA kernel ms per
iteration, and the kernels with the most CUDA time. Kernel time close to wall time means the
GPU is busy; far below it, launches and Python set the pace. The fuses alternate (kernel,
reference, kernel) so a slow first case shows as such.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from emohrnet_fast import Predictor, models
from emohrnet_fast.models.base import fold_batchnorm

ITERATIONS = 10
WARMUP = 5


def run_case(
    name: str, batch: int, train: bool, fuse: str, channels_last: bool = False, fold: bool = False
) -> None:
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = models.create("emohrnet_small", num_classes=7, fuse=fuse).cuda()
    if fold:  # what the Predictor runs: BatchNorms folded into the convolutions
        model = fold_batchnorm(model)
    model = model.to(memory_format=layout)
    model.train(train)
    x = torch.randn(batch, 1, 128, 201, device="cuda").contiguous(memory_format=layout)
    labels = torch.randint(0, 7, (batch,), device="cuda")

    def step() -> None:
        if train:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x).logits, labels).backward()
        else:
            with torch.inference_mode():
                model(x)

    variant = (", channels_last" if channels_last else "") + (", BN folded" if fold else "")
    report(f"{name}, fuse={fuse}{variant}", step)


def report(title: str, step) -> None:
    """Time ``step`` (WARMUP calls, then ITERATIONS synchronised), profile ITERATIONS more;
    print the wall time and the CUDA kernels, then the CPU ops, that took the most time."""
    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(ITERATIONS):
        step()
    torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - start) / ITERATIONS * 1e3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(ITERATIONS):
            step()
        torch.cuda.synchronize()
    averages = prof.key_averages()
    cuda = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA]
    kernel_ms = sum(e.self_device_time_total for e in cuda) / ITERATIONS / 1e3
    print(f"\n## {title}: wall {wall_ms:.2f} ms/iter, CUDA kernels {kernel_ms:.2f} ms/iter")
    for label, events, key in (
        ("CUDA", cuda, lambda e: e.self_device_time_total),
        (
            "CPU",
            [e for e in averages if e.device_type != torch.autograd.DeviceType.CUDA],
            lambda e: e.self_cpu_time_total,
        ),
    ):
        events.sort(key=key, reverse=True)
        for e in events[:10]:
            print(
                f"{label:4} {key(e) / ITERATIONS / 1e3:8.3f} ms {e.count // ITERATIONS:5d} calls  "
                f"{e.key[:100]}"
            )


def run_predictor(clips: int) -> None:
    """Predictor.probabilities on ``clips`` 2-s clips (fp32, its CUDA graph replayed)."""
    torch.manual_seed(0)
    model = models.create("emohrnet_small", num_classes=7)
    model.labels = tuple(f"class{i}" for i in range(7))
    predictor = Predictor(model, device="cuda", batch_size=256)
    rate = model.default_frontend.sample_rate
    batch = torch.randn(clips, 2 * rate, device="cuda") * 0.1
    if clips == 1:
        batch = batch[0]  # one clip, as predict(waveform) passes it

    def step() -> None:
        predictor.probabilities(batch, rate)

    report(f"Predictor.probabilities B={clips}, graphs={predictor.cuda_graphs}", step)


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    for name, batch, train in (("inference B=256", 256, False), ("train step B=64", 64, True)):
        for fuse in ("kernel", "reference", "kernel"):
            run_case(name, batch, train, fuse)
        # cuDNN's fastest convolutions here are NHWC: in NCHW it transposes around each one.
        run_case(name, batch, train, "kernel", channels_last=True)
        if not train:
            run_case(name, batch, train, "kernel", channels_last=True, fold=True)
    run_predictor(256)
    run_predictor(1)  # the single-clip latency case: 5.6 ms on an H200, where are they?


if __name__ == "__main__":
    main()
