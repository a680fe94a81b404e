"""Benchmark plumbing: workloads, device timing and the summary table.

Every benchmark records (workload, implementation, seconds per call) here; the terminal
summary prints audio-seconds per second, the ratio to the baseline of the same workload and,
on CUDA, the fraction of the memory floor (bytes that must move / copy bandwidth measured in
the same run). `--bench-table PATH` also writes the table as markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from emohrnet_fast._info import device_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SAMPLE_RATE = 16000
CLIP_SECONDS = 4.0
BATCHES = [1, 64, 256]
SHAPES = [(512, 160, 128), (400, 160, 64)]  # (n_fft, hop_length, n_mels)


@dataclass
class Record:
    device: str
    workload: str
    impl: str
    seconds: float  # per call
    audio_seconds: float  # per call (0 when the throughput is counted in clips)
    clips: int  # per call, for models
    floor_bytes: int  # bytes the op must move at least (our op only; 0 otherwise)
    baseline: bool


_RECORDS: list[Record] = []
_COPY_BANDWIDTH: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption("--bench-table", default=None, help="write the summary table (markdown) here")


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a large device-to-device copy (read + write), measured once per run."""
    if device not in _COPY_BANDWIDTH:
        n = 256 * 1024 * 1024 // 4
        src = torch.empty(n, device=device).uniform_()
        dst = torch.empty_like(src)
        for _ in range(3):
            dst.copy_(src)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        reps = 20
        start.record()
        for _ in range(reps):
            dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        _COPY_BANDWIDTH[device] = 2 * src.numel() * 4 * reps / (start.elapsed_time(end) / 1e3)
    return _COPY_BANDWIDTH[device]


class Timer:
    """Runs `fn` under pytest-benchmark; on CUDA, `repeat` calls per round then one sync, so
    the sync cost does not pollute microsecond-scale kernels."""

    def __init__(self, benchmark, device: str):
        self.benchmark = benchmark
        self.device = device

    def __call__(
        self,
        fn,
        *,
        workload: str,
        impl: str,
        audio_seconds: float = 0.0,
        clips: int = 0,
        floor_bytes: int = 0,
        baseline: bool = False,
        repeat: int = 1,
        rounds: int = 5,
    ):
        if self.device == "cuda":

            def run():
                for _ in range(repeat):
                    fn()
                torch.cuda.synchronize()
        else:
            repeat = 1
            run = fn
        self.benchmark.group = f"{self.device} {workload}"
        self.benchmark.extra_info.update(
            impl=impl, audio_seconds=audio_seconds, clips=clips, repeat=repeat
        )
        self.benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
        stats = self.benchmark.stats
        if stats is None:  # --benchmark-disable: ran once, nothing measured
            return
        seconds = stats.stats.median / repeat
        _RECORDS.append(
            Record(
                self.device, workload, impl, seconds, audio_seconds, clips, floor_bytes, baseline
            )
        )


@pytest.fixture
def timer(benchmark, device):
    return Timer(benchmark, device)


def _table() -> list[str]:
    by_workload: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for rec in _RECORDS:
        by_workload[(rec.device, rec.workload)].append(rec)
    lines = [
        "| device | workload | implementation | ms / call | throughput | vs baseline | "
        "memory floor |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (device, workload), recs in by_workload.items():
        base = next((r for r in recs if r.baseline), None)
        for rec in recs:
            ratio = f"{base.seconds / rec.seconds:.2f}x" if base else "-"
            floor = "-"
            if rec.floor_bytes and device == "cuda":
                floor = f"{rec.floor_bytes / copy_bandwidth(device) / rec.seconds:.0%}"
            throughput = (
                f"{rec.audio_seconds / rec.seconds:,.0f} audio-s/s"
                if rec.audio_seconds
                else f"{rec.clips / rec.seconds:,.0f} clips/s"
            )
            lines.append(
                f"| {device_name(device)} | {workload} | {rec.impl} | {rec.seconds * 1e3:.3f} | "
                f"{throughput} | {ratio} | {floor} |"
            )
    if "cuda" in _COPY_BANDWIDTH:
        lines.append(f"\nCopy bandwidth (same run): {_COPY_BANDWIDTH['cuda'] / 1e9:.0f} GB/s")
    return lines


def pytest_terminal_summary(terminalreporter, config):
    if not _RECORDS:
        return
    lines = _table()
    terminalreporter.section("emohrnet_fast benchmark summary")
    for line in lines:
        terminalreporter.write_line(line)
    path = config.getoption("--bench-table")
    if path:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
