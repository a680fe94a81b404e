"""benchmarks/median_tables.py: repeated benchmark tables merge into medians and ranges."""

from __future__ import annotations

import importlib.util

from ef_testing import REPO

spec = importlib.util.spec_from_file_location(
    "median_tables", REPO / "benchmarks" / "median_tables.py"
)
median_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(median_tables)


def table(ours_ms: float, base_ms: float) -> str:
    return (
        "| device | workload | implementation | ms / call | throughput | vs baseline | "
        "memory floor |\n|---|---|---|---:|---:|---:|---:|\n"
        f"| cpu, 2 threads | fuse | ours | {ours_ms:.3f} | 1 clips/s | "
        f"{base_ms / ours_ms:.2f}x | - |\n"
        f"| cpu, 2 threads | fuse | eager | {base_ms:,.3f} | 1 clips/s | 1.00x | - |\n"
        "\nCopy bandwidth (same run): 10 GB/s\n"
    )


def test_medians_and_ranges_over_runs():
    merged = median_tables.merge([table(2.0, 4.0), table(1.0, 4.0), table(4.0, 4.0)])
    lines = merged.splitlines()
    assert lines[0].startswith("| device | workload | implementation | ms / call (median)")
    assert lines[2] == "| cpu, 2 threads | fuse | ours | 2.000 | 2.00x | 1.00-4.00x | 3 |"
    assert lines[3] == "| cpu, 2 threads | fuse | eager | 4.000 | 1.00x | 1.00-1.00x | 3 |"
    assert len(lines) == 4


def test_thousands_separators_and_missing_ratio():
    text = table(1.0, 1234.5).replace("| 1.00x | - |\n\n", "| - | - |\n\n")
    rows = median_tables.parse(text)
    assert rows[1] == (("cpu, 2 threads", "fuse", "eager"), 1234.5, None)


def test_usage_without_arguments(capsys):
    assert median_tables.main([]) == 2
    assert "usage" in capsys.readouterr().err
