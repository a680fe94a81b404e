"""The command line entry points."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import emohrnet_fast
from emohrnet_fast.cli import main


def test_info_prints_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "emohrnet_fast 0.1.0" in out and "CPU kernels:  log_mel, spec_augment, hr_fuse" in out


def test_info_json_via_python_m(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emohrnet_fast", "info", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["kernels"]["cpu"] == ["log_mel", "spec_augment", "hr_fuse"]


def test_installed_package_ships_its_data_files(tmp_path):
    # From a folder outside the repository, so the installed package answers (in CI, the wheel).
    probe = (
        "import importlib.resources as r; root = r.files('emohrnet_fast'); "
        "print(*(root.joinpath(p).is_file() for p in ('py.typed', "
        "'assets/default/model.safetensors', 'assets/default/MODEL_CARD.md', "
        "'assets/demo/labels.csv')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True"] * 4  # py.typed: PEP 561, the hints are for users


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"emohrnet-fast {emohrnet_fast.__version__}\n"


def test_unknown_command_exits_nonzero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emohrnet_fast", "frobnicate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


def test_bench_times_each_op_beside_its_baseline(capsys):
    args = ["--device", "cpu", "--batch", "4", "--clip-seconds", "1", "--repeat", "1"]
    code = main(["bench", *args, "--json", "--quiet"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and "threads" in report["device"]
    assert [row["op"] for row in report["rows"]] == [
        "log-Mel",
        "SpecAugment",
        "HRNet fuse, forward",
        "HRNet fuse, forward + backward",
        "EmoHRNet-small inference",
    ]
    for row in report["rows"]:
        assert row["ours_ms"] > 0 and row["baseline_ms"] > 0
        assert row["speedup"] == row["baseline_ms"] / row["ours_ms"]
    code = main(["bench", "--device", "cpu", "--batch", "2", "--repeat", "1", "--no-model"])
    table = capsys.readouterr().out
    assert code == 0 and table.startswith("Device: ") and table.count("\n| ") == 5
    assert "EmoHRNet" not in table


def test_bench_bad_arguments(capsys):
    assert main(["bench", "--batch", "0"]) == 1
    assert "batch=0: expected an integer >= 1" in capsys.readouterr().err
    assert main(["bench", "--clip-seconds", "0.1"]) == 1
    assert "clip_seconds=0.1" in capsys.readouterr().err
