"""Drive the CUDA kernels over edge cases (for compute-sanitizer) or one big workload (ncu).

python3 -P tests/gpu/kernel_cases.py            # edge cases; CUDA vs CPU kernel; exit 1 on mismatch
python3 -P tests/gpu/kernel_cases.py --profile  # B=256, 4 s, (512, 160, 128), three launches

KERNEL_CASES=quick (what sanitize.sh uses) keeps every configuration but drops the longest
and the middle lengths: under racecheck a 16001-sample clip through the generic FFT stage is
minutes of instrumented shared-memory reads, and the short lengths hold the edge frames.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ef_testing import frame_relative_error

from emohrnet_fast import FrontEndConfig
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.ops import hr_fuse, log_mel, spec_augment, spec_augment_

CONFIGS = [
    FrontEndConfig(),
    FrontEndConfig(n_fft=400, n_mels=64, output="log", power=1.0),
    FrontEndConfig(n_mfcc=40),
    FrontEndConfig(n_mfcc=13, top_db=None),
    FrontEndConfig(n_fft=2042, hop_length=500, n_mels=64),  # prime half-length: generic stage
    FrontEndConfig(n_fft=8192, hop_length=2048, n_mels=None, output="power"),  # > 48 KiB smem
    FrontEndConfig(n_fft=2, hop_length=1, n_mels=None, output="power"),
    FrontEndConfig(n_fft=96, hop_length=7, n_mels=None, output="db"),
]
LENGTHS = [1, 2, 255, 257, 511, 16001]
if os.environ.get("KERNEL_CASES", "full") == "quick":
    LENGTHS = [1, 2, 257, 4001]
BATCHES = [1, 3]


def check_edge_cases() -> int:
    failures = 0
    for config in CONFIGS:
        for length in LENGTHS:
            for batch in BATCHES:
                x = torch.randn(batch, length)
                cpu = log_mel(x, config)
                gpu = log_mel(x.cuda(), config).cpu()
                if config.output == "db" or config.n_mfcc is not None:
                    err = float((gpu - cpu).abs().max())
                    ok = err <= 2e-3 * (2 * config.n_bands) ** 0.5
                else:
                    to_power = torch.exp if config.output == "log" else (lambda t: t)
                    err = frame_relative_error(to_power(gpu), to_power(cpu))
                    ok = err <= 1e-4
                if not ok:
                    failures += 1
                    print(f"MISMATCH {err:.3g}: batch={batch} length={length} {config}")
    failures += check_masks()
    failures += check_hr_fuse()
    torch.cuda.synchronize()
    print(f"{failures} mismatches")
    return 1 if failures else 0


def check_masks() -> int:
    """SpecAugment alone, in place, and fused into log_mel (with and without top_db/MFCC)."""
    failures = 0
    augment = SpecAugment(
        freq_masks=3, freq_width=50, time_masks=3, time_width=0.5, mask_value=-500.0
    )
    for shape in [(1, 1, 1, 1), (3, 2, 40, 13), (5, 128, 401)]:
        spec = torch.randn(shape)
        masks = augment.draw(shape[0], shape[-2], shape[-1])
        cuda_masks = type(masks)(masks.freq.cuda(), masks.time.cuda(), masks.values.cuda())
        expected = spec_augment(spec, masks)
        for got in (spec_augment(spec.cuda(), cuda_masks), spec_augment_(spec.cuda(), cuda_masks)):
            if not torch.equal(got.cpu(), expected):
                failures += 1
                print(f"MISMATCH spec_augment {shape}")
    for config in CONFIGS[:4]:
        x = torch.randn(3, 16001)
        masks = augment.draw(3, config.n_features, config.num_frames(16001))
        cuda_masks = type(masks)(masks.freq.cuda(), masks.time.cuda(), masks.values.cuda())
        err = float(
            (
                log_mel(x.cuda(), config, augment=cuda_masks).cpu()
                - log_mel(x, config, augment=masks)
            )
            .abs()
            .max()
        )
        if not err <= 2e-3 * (2 * config.n_bands) ** 0.5:
            failures += 1
            print(f"MISMATCH {err:.3g}: fused masks {config}")
    return failures


def check_hr_fuse() -> int:
    """hr_fuse forward and backward, CUDA vs CPU, on the odd EmoHRNet sizes and layouts."""
    failures = 0
    sizes = [(32, 101), (16, 51), (8, 26), (4, 13)]
    for dtype in (torch.float32, torch.bfloat16):
        for branch, n_branches, channels_last in [
            (0, 4, False),
            (1, 4, True),
            (0, 2, False),
            (3, 4, False),
        ]:
            height, width = sizes[branch]
            same = [torch.randn(3, 16, height, width) for _ in range(branch + 1)]
            low = [torch.randn(3, 16, *sizes[k]) for k in range(branch + 1, n_branches)]
            inputs = [t.to(dtype).requires_grad_() for t in same + low]
            gpu_inputs = [t.detach().cuda().requires_grad_() for t in inputs]
            if channels_last:
                gpu_inputs = [
                    t.detach().to(memory_format=torch.channels_last).requires_grad_()
                    for t in gpu_inputs
                ]
            n_same = len(same)
            cpu_out = hr_fuse(inputs[:n_same], inputs[n_same:])
            gpu_out = hr_fuse(gpu_inputs[:n_same], gpu_inputs[n_same:])
            grad = torch.randn_like(cpu_out)
            cpu_out.backward(grad)
            gpu_out.backward(grad.cuda())
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            errors = [float((gpu_out.float().cpu() - cpu_out.float()).abs().max())]
            errors += [
                float((g.grad.float().cpu() - c.grad.float()).abs().max())
                for g, c in zip(gpu_inputs, inputs, strict=True)
            ]
            if max(errors) > tol * max(1.0, n_branches):
                failures += 1
                print(f"MISMATCH {max(errors):.3g}: hr_fuse branch {branch}/{n_branches} {dtype}")
    return failures


def profile() -> int:
    config = FrontEndConfig()
    x = torch.randn(256, 64000, device="cuda")
    for _ in range(3):
        log_mel(x, config)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", action="store_true")
    sys.exit(profile() if parser.parse_args().profile else check_edge_cases())
