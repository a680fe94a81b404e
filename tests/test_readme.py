"""Every Python example in README.md runs as written, in a fresh interpreter started in the
repository root (-P keeps the source tree off sys.path: the installed package is used)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

from ef_testing import REPO


def test_readme_python_examples_run():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3, "README.md lost an example"
    outputs = []
    for block in blocks:
        result = subprocess.run(
            [sys.executable, "-P", "-c", block],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"README example failed:\n{block}\n{result.stderr}"
        outputs.append(result.stdout)
    assert "torch.Size([8, 128, 401])" in outputs[0]
    # The inference example's output shown in the README is what it prints (up to rounding).
    shown = re.search(r"Its output .*?```text\n(.*?)```", text, flags=re.S).group(1)
    (printed,) = [out for b, out in zip(blocks, outputs, strict=True) if "predict_timeline" in b]
    for want, got in zip(shown.splitlines(), printed.splitlines(), strict=True):
        assert got[:40] == want[:40], (want, got)
    # The ONNX example: ONNX Runtime names one of the model's labels for a demo clip.
    (onnx_out,) = [out for b, out in zip(blocks, outputs, strict=True) if "export_onnx" in b]
    assert " -> " in onnx_out, onnx_out


def test_readme_cli_commands_run(tmp_path):
    """The README's training command lines, as written, on a tiny EmoDB copy for one epoch
    (appended flags shorten the run; argparse lets the last occurrence win)."""
    from train_fixtures import make_tiny_emodb

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Train and evaluate") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["emohrnet-fast"] * 8 + ["torchrun"]
    root = make_tiny_emodb(tmp_path / "emodb", per_cell=1)
    cache = ["--quiet", "--cache-dir", str(tmp_path / "cache")]
    for line in lines:
        line = line.replace("../shared/data/emodb", str(root))
        argv = shlex.split(line.replace("runs/", f"{tmp_path}/runs/"))
        command = argv[argv.index("-m") + 2] if argv[0] == "torchrun" else argv[1]
        short = {
            "train": ["--epochs", "1", "--clip-seconds", "0.5"],
            "cv": ["--epochs", "1", "--clip-seconds", "0.5", "--folds", "0,1"],
            "evaluate": [],
            "ensemble": [],
            "export": [],
        }[command]
        if argv[0] == "torchrun":
            runner = [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
        else:
            runner = [sys.executable, "-m", "emohrnet_fast", *argv[1:]]
        result = subprocess.run(
            [*runner, *short, *(cache if command in ("train", "evaluate", "cv") else cache[:1])],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
    assert (tmp_path / "runs" / "hr-small" / "report" / "confusion.png").exists()
    assert (tmp_path / "runs" / "loso-hr-small" / "summary.md").exists()
    assert (
        "ensemble of 2 studies"
        in (tmp_path / "runs" / "loso-hr-small-2seeds" / "summary.md").read_text()
    )
    assert (tmp_path / "runs" / "hr-small-speaker03-unheard" / "MODEL_CARD.md").exists()
    ensemble = json.loads(
        (tmp_path / "runs" / "hr-small-2seeds-speaker03" / "report.json").read_text()
    )
    assert ensemble["meta"]["ensemble_of"] == 2 and sum(ensemble["support"]) > 0
    assert (tmp_path / "runs" / "ddp" / "checkpoints").is_dir()


def test_readme_inference_commands_run(tmp_path):
    """The README's inference command lines, as written (outputs redirected to tmp_path)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Inference") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert {shlex.split(line)[1] for line in lines} == {"predict", "timeline", "demo", "onnx"}
    for line in lines:
        argv = shlex.split(line.replace("runs/", f"{tmp_path}/runs/"))
        result = subprocess.run(
            [sys.executable, "-P", "-m", "emohrnet_fast", *argv[1:]],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), line
    assert (tmp_path / "runs" / "timeline.png").stat().st_size > 0
    assert (tmp_path / "runs" / "emotion.onnx").stat().st_size > 0


def test_readme_bench_command_runs():
    """The Benchmarks section's quick command, as written, shortened by appended flags."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Benchmarks") : text.index("## Data")]
    (line,) = [
        line
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
        for line in block.splitlines()
        if line.startswith("emohrnet-fast bench")
    ]
    argv = [sys.executable, "-P", "-m", "emohrnet_fast", *shlex.split(line)[1:]]
    result = subprocess.run(
        [*argv, "--device", "cpu", "--batch", "2", "--repeat", "1", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| log-Mel |" in result.stdout and "speed-up" in result.stdout
