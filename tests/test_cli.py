"""The command line entry points."""

from __future__ import annotations

import json
import subprocess
import sys

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


def test_unknown_command_exits_nonzero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "emohrnet_fast", "frobnicate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr
