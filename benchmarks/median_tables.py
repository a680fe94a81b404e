"""Merge the `--bench-table` files of repeated benchmark runs into one table of medians.

On a noisy machine one run's ratio can swing by 0.5x; the median over several runs, with its
range beside it, is the figure to quote. Rows are matched by (device, workload,
implementation) and keep the first run's order.

    for i in 1 2 3 4 5; do pytest benchmarks ... --bench-table run$i.md; done
    python benchmarks/median_tables.py run*.md > table.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

HEADER = (
    "| device | workload | implementation | ms / call (median) | vs baseline (median) | "
    "vs baseline (range) | runs |\n|---|---|---|---:|---:|---:|---:|"
)


def parse(text: str) -> list[tuple[tuple[str, str, str], float, float | None]]:
    """((device, workload, implementation), ms per call, ratio or None) per table row."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 7 or cells[0] in ("device", "") or set(cells[0]) <= set("-:"):
            continue
        ratio = float(cells[5].rstrip("x")) if cells[5].endswith("x") else None
        rows.append(((cells[0], cells[1], cells[2]), float(cells[3].replace(",", "")), ratio))
    return rows


def merge(texts: list[str]) -> str:
    times: dict[tuple[str, str, str], list[float]] = {}
    ratios: dict[tuple[str, str, str], list[float]] = {}
    for text in texts:
        for key, ms, ratio in parse(text):
            times.setdefault(key, []).append(ms)
            if ratio is not None:
                ratios.setdefault(key, []).append(ratio)
    lines = [HEADER]
    for key, ms in times.items():
        r = ratios.get(key, [])
        median = f"{statistics.median(r):.2f}x" if r else "-"
        spread = f"{min(r):.2f}-{max(r):.2f}x" if r else "-"
        lines.append(
            f"| {' | '.join(key)} | {statistics.median(ms):.3f} | {median} | {spread} | {len(ms)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python benchmarks/median_tables.py TABLE.md [TABLE.md ...]", file=sys.stderr)
        return 2
    sys.stdout.write(merge([Path(path).read_text() for path in argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
