"""Cross-validation studies, the train/evaluate/cv CLI, and training under torchrun (gloo)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import SPEAKERS, TINY, make_tiny_emodb, tiny_corpus

import emohrnet_fast as ef
from emohrnet_fast import checkpoint
from emohrnet_fast.cli import main
from emohrnet_fast.evaluate import dataset_logits

crossval_module = importlib.import_module("emohrnet_fast.crossval")
ONE_EPOCH = TINY.replace(epochs=1)


def test_loso_study_writes_everything_and_pools_folds(corpus, tmp_path):
    result = ef.cross_validate(ONE_EPOCH, corpus, "loso", out_dir=tmp_path, quiet=True)
    assert result.speaker_independent and len(result.folds) == len(SPEAKERS)
    for report, speaker in zip(result.folds, SPEAKERS, strict=True):
        assert report.meta["test_groups"] == [speaker] and sum(report.support) == 6
    pooled = torch.tensor(result.pooled.confusion)
    assert int(pooled.sum()) == len(corpus)
    assert (
        pooled.tolist()
        == torch.stack([torch.tensor(r.confusion) for r in result.folds]).sum(0).tolist()
    )  # every fold has all three labels here, in the same order
    assert result.mean["ua"] == pytest.approx(sum(r.ua for r in result.folds) / 4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocol"] == "loso" and summary["train_config"] == ONE_EPOCH.to_dict()
    assert len(summary["per_fold"]) == 4
    for fold in range(4):
        assert (tmp_path / f"fold-{fold:02d}" / "report" / "confusion.png").stat().st_size > 0
        assert checkpoint.epoch_dirs(tmp_path / f"fold-{fold:02d}" / "run")
    assert "speaker-independent" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "pooled" / "report.json").exists()
    # Each fold records where, when and with what it trained; the summary says it once.
    for fold in summary["per_fold"]:
        ran = fold["ran"]
        assert ran["device"].endswith(f"{torch.get_num_threads()} threads")
        assert ran["torch"] == torch.__version__ and ran["emohrnet_fast"] == ef.__version__
        assert ran["train_seconds"] >= 0 and len(ran["finished_utc"]) == len("2026-12-06 12:00")
    line = (tmp_path / "summary.md").read_text().splitlines()[-1]
    assert line.startswith(f"trained on {summary['per_fold'][0]['ran']['device']} (torch ")
    assert "min of training, folds finished" in line and "folds recorded" not in line


def test_speaker_normalised_study_says_so(corpus):
    config = ONE_EPOCH.replace(speaker_norm=True)
    result = ef.cross_validate(config, corpus, "loso", folds=[1], quiet=True)
    assert result.speaker_normalised and result.folds[0].meta["speaker_normalised"]
    assert "speaker-normalised with each test speaker's unlabelled audio" in result.markdown()
    plain = ef.cross_validate(ONE_EPOCH, corpus, "loso", folds=[1], quiet=True)
    assert "speaker-normalised" not in plain.markdown()


def test_speaker_dependent_folds_keep_the_training_statistics(corpus, tmp_path):
    """In a random split every test speaker also trained: speaker normalisation scores them
    with the statistics of their training clips, not of their few test clips."""
    from emohrnet_fast.evaluate import dataset_logits, shared_speaker_audio

    config = ONE_EPOCH.replace(speaker_norm=True)
    ef.cross_validate(config, corpus, "random", k=3, folds=[0], out_dir=tmp_path, quiet=True)
    split = ef.data.splits(corpus, "random", k=3)[0]
    test = corpus.subset(split.test)
    model = ef.load_model(tmp_path / "fold-00" / "run")
    audio = shared_speaker_audio(corpus, test, split.train.tolist())
    assert {u.speaker for u in audio.utterances} == {u.speaker for u in test.utterances}
    summary = (tmp_path / "summary.md").read_text()
    assert "speaker-DEPENDENT, speaker-normalised with each speaker's training audio" in summary
    saved = json.loads((tmp_path / "fold-00" / "predictions.json").read_text())
    clip = config.eval_clip_seconds
    want = dataset_logits(model, test, clip_seconds=clip, speaker_audio=audio)
    torch.testing.assert_close(torch.tensor(saved["logits"]), want, rtol=0, atol=2e-5)
    alone = dataset_logits(model, test, clip_seconds=clip)
    assert not torch.allclose(alone, want, atol=1e-3)


@pytest.mark.parametrize("eval_whole", [False, True])
def test_folds_test_centred_windows_or_whole_utterances(corpus, tmp_path, eval_whole):
    """TINY trains on 0.5-s crops of EmoDB's 2-s clips; a fold tests centred 0.5-s windows,
    or with eval_whole the whole clips, as predict() scores them."""
    config = ONE_EPOCH.replace(eval_whole=eval_whole)
    split = ef.data.splits(corpus, "loso")[2]
    ef.cross_validate(config, corpus, "loso", folds=[2], out_dir=tmp_path, quiet=True)
    saved = json.loads((tmp_path / "fold-02" / "predictions.json").read_text())
    model = ef.load_model(tmp_path / "fold-02" / "run")
    test = corpus.subset(split.test)
    whole, window = (dataset_logits(model, test, clip_seconds=c) for c in (None, 0.5))
    expected, other = (whole, window) if eval_whole else (window, whole)
    # logits saved to 5 decimals; one epoch leaves them close to each other, not that close
    torch.testing.assert_close(torch.tensor(saved["logits"]), expected, atol=1e-5, rtol=0)
    assert (expected - other).abs().max() > 1e-3


def test_killed_study_resumes_at_its_fold(corpus, tmp_path, monkeypatch):
    calls = []
    real_train = crossval_module.train

    def failing_train(config, train_set, *args, **kwargs):
        calls.append(sorted({u.speaker for u in train_set}))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the study dies in fold 1
        return real_train(config, train_set, *args, **kwargs)

    monkeypatch.setattr(crossval_module, "train", failing_train)
    with pytest.raises(KeyboardInterrupt):
        ef.cross_validate(ONE_EPOCH, corpus, "speaker_kfold", k=2, out_dir=tmp_path, quiet=True)
    assert (tmp_path / "fold-00" / "predictions.json").exists()
    assert not (tmp_path / "fold-01" / "predictions.json").exists()
    calls.clear()
    result = ef.cross_validate(
        ONE_EPOCH, corpus, "speaker_kfold", k=2, out_dir=tmp_path, quiet=True
    )
    assert len(calls) == 1  # only fold 1 trained again
    assert len(result.folds) == 2 and (tmp_path / "summary.json").exists()
    assert all("ran" in report.meta for report in result.folds)  # the resumed fold's record too
    with pytest.raises(ValueError, match=r"different settings \(protocol: saved 'speaker_kfold'"):
        ef.cross_validate(ONE_EPOCH, corpus, "loso", out_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match=r"different settings \(lr: saved 0.003, now 0.002\)$"):
        ef.cross_validate(
            ONE_EPOCH.replace(lr=0.002), corpus, "speaker_kfold", k=2, out_dir=tmp_path
        )
    # A study written before a TrainConfig field existed resumes with the field's default.
    file = tmp_path / "study.json"
    study = json.loads(file.read_text())
    del study["train_config"]["ema_decay"]
    file.write_text(json.dumps(study))
    calls.clear()
    ef.cross_validate(ONE_EPOCH, corpus, "speaker_kfold", k=2, out_dir=tmp_path, quiet=True)
    assert not calls  # both folds were finished


def test_study_refuses_a_fold_it_could_not_score_before_training(corpus, monkeypatch):
    """A label that only the test speaker has fails the study up front, naming the fold,
    not after the folds before it have trained."""
    calls = []
    monkeypatch.setattr(crossval_module, "train", lambda *a, **k: calls.append(1))
    alone = corpus.subset(
        [i for i, u in enumerate(corpus) if u.label != "sad" or u.speaker == SPEAKERS[-1]]
    )
    with pytest.raises(ValueError, match=r"fold 3 .*labels its training set lacks: \['sad'\]"):
        ef.cross_validate(ONE_EPOCH, alone, "loso", quiet=True)
    assert not calls


def test_study_resumed_on_other_utterances_is_refused(corpus, tmp_path):
    ef.cross_validate(ONE_EPOCH, corpus, "loso", folds=[0], out_dir=tmp_path, quiet=True)
    renamed = dataclasses.replace(
        corpus,
        utterances=tuple(
            dataclasses.replace(u, path=u.path.with_name("copy-" + u.path.name)) for u in corpus
        ),
    )
    with pytest.raises(ValueError, match="scored other test utterances than fold 0"):
        ef.cross_validate(ONE_EPOCH, renamed, "loso", folds=[0], out_dir=tmp_path, quiet=True)


def test_random_split_is_labelled_speaker_dependent(corpus):
    result = ef.cross_validate(ONE_EPOCH, corpus, "random", k=2, folds=[0], quiet=True)
    assert not result.speaker_independent and "speaker-DEPENDENT" in result.markdown()
    assert len(result.folds) == 1


@pytest.mark.parametrize(
    ("protocol", "kwargs", "pattern"),
    [
        ("leave_one_out", {}, "protocol='leave_one_out': expected one of"),
        ("session", {}, "protocol='session' needs session metadata"),
        ("speaker_kfold", {"k": 9}, "speaker_kfold needs at least k speakers"),
        ("loso", {"folds": [7]}, r"folds=\[7\]: .* loso on emodb has folds 0..3"),
        ("loso", {"folds": []}, r"folds=\[\]: expected None or a non-empty list"),
        ("loso", {"folds": [True]}, r"folds=\[True\]: expected"),
    ],
)
def test_impossible_protocols(corpus, protocol, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ef.cross_validate(ONE_EPOCH, corpus, protocol, quiet=True, **kwargs)


def test_loso_with_one_speaker_is_an_error(corpus):
    one = corpus.subset([i for i, u in enumerate(corpus) if u.speaker == "03"])
    with pytest.raises(ValueError, match="needs at least 2 groups"):
        ef.cross_validate(ONE_EPOCH, one, "loso", quiet=True)


TINY_ARGS = [
    "--model",
    "centerloss_cnn_mfcc",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--clip-seconds",
    "0.5",
    "--device",
    "cpu",
    "--quiet",
]


def test_cli_train_evaluate_cv_end_to_end(tmp_path, capsys):
    root = make_tiny_emodb(tmp_path / "emodb", per_cell=1)
    data = ["--corpus", "emodb", "--root", str(root), "--cache-dir", str(tmp_path / "cache")]
    run = tmp_path / "run"
    code = main(["train", *data, *TINY_ARGS, "--out", str(run), "--val-speakers", "03"])
    out = capsys.readouterr().out
    assert code == 0 and "checkpoint:" in out and "UA" in out
    assert checkpoint.read_meta(checkpoint.resolve(run))["train_config"]["clip_seconds"] == 0.5

    report_dir = tmp_path / "report"
    code = main(["evaluate", "--checkpoint", str(run), *data, "--speakers", "03,08"])
    assert code == 0 and "WA" in capsys.readouterr().out
    code = main(["evaluate", "--checkpoint", str(run), *data, "--json", "--out", str(report_dir)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and sum(report["support"]) == 12
    assert (report_dir / "confusion.png").exists()
    code = main(["evaluate", "--checkpoint", "default", *data, "--speakers", "03"])
    assert code == 0 and "UA" in capsys.readouterr().out  # the bundled model, by name

    study = tmp_path / "study"
    code = main(
        ["cv", *data, *TINY_ARGS, "--protocol", "loso", "--folds", "0", "--out", str(study)]
    )
    assert code == 0 and "loso (speaker-independent), 1 fold(s)" in capsys.readouterr().out
    assert "(folds [0] only)" in (study / "summary.md").read_text()


def test_cli_training_flags_reach_the_config():
    from emohrnet_fast.cli import _parser, _train_config

    argv = ["train", "--corpus", "emodb", "--root", ".", "--out", "x", *TINY_ARGS]
    args = _parser().parse_args(
        [
            *argv,
            "--mixup",
            "0.2",
            "--label-smoothing",
            "0.1",
            "--speed-perturb",
            "0.1",
            "--balance-classes",
            "--speaker-norm",
            "--eval-whole",
            "--ema",
            "0.99",
            "--compile",
            "--compile-mode",
            "reduce-overhead",
            "--n-mels",
            "64",
            "--sample-rate",
            "8000",
        ]
    )
    config = _train_config(args)
    preset = ef.models.model_config("centerloss_cnn_mfcc").frontend  # TINY_ARGS' model
    assert config.frontend == preset.replace(n_mels=64, sample_rate=8000)
    assert (config.mixup, config.label_smoothing, config.speed_perturb) == (0.2, 0.1, 0.1)
    assert config.balance_classes is True and config.speaker_norm is True
    assert config.eval_whole is True and config.eval_clip_seconds is None
    assert config.ema_decay == 0.99
    assert (config.compile, config.compile_mode) == (True, "reduce-overhead")
    default = _train_config(_parser().parse_args(argv))
    assert (default.mixup, default.balance_classes, default.speaker_norm) == (0.0, False, False)
    assert default.eval_clip_seconds == default.clip_seconds
    assert default.ema_decay == 0.0 and default.frontend is None


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (
            ["evaluate", "--checkpoint", "{tmp}/nothing", "--corpus", "emodb", "--root", "{tmp}"],
            "checkpoint '.*nothing' does not exist",
        ),
        (
            [
                "evaluate",
                "--checkpoint",
                "{tmp}/nothing",
                "--corpus",
                "emodb",
                "--root",
                "{tmp}",
                "--device",
                "tpu",
            ],
            "--device='tpu': not a device",
        ),
        (["train", "--corpus", "emodb", "--root", "{tmp}/absent", "--out", "{tmp}/r"], "absent"),
        (
            ["train", "--corpus", "emodb", "--root", "{tmp}", "--out", "{tmp}/r", "--epochs", "0"],
            "TrainConfig.epochs=0",
        ),
    ],
)
def test_cli_errors_are_one_line_without_traceback(tmp_path, argv, pattern):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "emohrnet_fast", *argv, "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("emohrnet-fast: error: "), result.stderr
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_cli_unknown_model_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--corpus", "emodb", "--root", ".", "--out", "x", "--model", "vgg"])
    assert exit_info.value.code == 2 and "invalid choice: 'vgg'" in capsys.readouterr().err
    for command in ("train", "evaluate", "cv"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and "--corpus" in capsys.readouterr().out


DDP_SCRIPT = """
import hashlib, importlib, json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import torch, torch.distributed as dist
from train_fixtures import TINY, tiny_corpus
import emohrnet_fast as ef

trainer_class = importlib.import_module("emohrnet_fast.train")._Trainer
fit, heads = trainer_class.fit, []
def fit_and_keep_head(self, **kwargs):
    heads.append(self.speaker_head)
    return fit(self, **kwargs)
trainer_class.fit = fit_and_keep_head
waveforms_class = importlib.import_module("emohrnet_fast.data.corpus").Waveforms
crops, positions = waveforms_class.crops, []
def recording_crops(self, indices, length, position=0.0, speed=None):
    if torch.is_tensor(position):  # a training step's random crops
        positions.append(position.tolist())
    return crops(self, indices, length, position, speed)
waveforms_class.crops = recording_crops

corpus = tiny_corpus(Path({data!r}))
config = TINY.replace(epochs=2, ema_decay={ema}, speaker_adversarial={adversarial},
    reconstruction_weight={reconstruction})
result = ef.train(config, corpus, out_dir={out!r}, progress=False, quiet=True)
state = {{k: v.tolist() for k, v in result.model.state_dict().items()}}
head = {{k: v.tolist() for k, v in heads[0].state_dict().items()}} if heads[0] else None
rank = int(__import__("os").environ["RANK"])
Path({out!r}, f"rank{{rank}}.json").write_text(json.dumps({{"state": state, "head": head,
    "history": result.history, "positions": positions}}))
"""


def _torchrun(args: list[str], cwd: Path) -> tuple[str, str]:
    """stdout and stderr of ``torchrun --standalone --nproc_per_node=2 ARGS`` (gloo); fails the
    test on a non-zero exit or a hang."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    # Its own session, so a hung launcher goes down with its two workers (a run takes ~5 s).
    process = subprocess.Popen(
        [*command, "--nproc_per_node=2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        pytest.fail(f"torchrun hung for 120 s: {stderr[-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    return stdout, stderr


@pytest.mark.parametrize(
    ("ema", "adversarial", "reconstruction"), [(0.0, 0.0, 0.1), (0.9, 0.5, 0.0)]
)
def test_torchrun_gloo_two_processes(corpus, tmp_path, ema, adversarial, reconstruction):
    """Both ranks end on the same weights (with ema_decay: the same average, BatchNorm's
    averaged statistics included; with speaker_adversarial: the same speaker head, which
    lives outside DDP) and rank 0's checkpoint holds them. Each rank draws its own crops;
    a decoder left out of the loss (reconstruction_weight=0) does not stall DDP."""
    out = tmp_path / "run"
    data = tmp_path / "data"
    tiny_corpus(data)  # decode once, so both ranks read the cache
    script = tmp_path / "ddp_train.py"
    script.write_text(
        DDP_SCRIPT.format(
            tests=str(Path(__file__).parent),
            data=str(data),
            out=str(out),
            ema=ema,
            adversarial=adversarial,
            reconstruction=reconstruction,
        )
    )
    _torchrun([str(script)], cwd=tmp_path)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]["positions"]) == 2  # one step per epoch
    assert ranks[0]["positions"][0] != ranks[1]["positions"][0]
    assert ranks[0]["state"] == ranks[1]["state"]  # DDP kept the replicas identical
    assert ranks[0]["head"] == ranks[1]["head"]
    assert (ranks[0]["head"] is None) == (adversarial == 0)
    assert [row["epoch"] for row in ranks[0]["history"]] == [1, 2]
    # 24 clips over 2 ranks: 12 each, 1 step of 8 per rank, 16 clips counted per epoch.
    assert ranks[0]["history"][0]["clips_per_s"] > 0
    saved = ef.load_model(out).state_dict()
    for key, value in ranks[0]["state"].items():
        torch.testing.assert_close(saved[key], torch.tensor(value, dtype=saved[key].dtype))
    assert [p.name for p in checkpoint.epoch_dirs(out)] == ["epoch-0002"]


def test_torchrun_cv_rank0_writes_and_prints(tmp_path):
    """``cv`` under torchrun: both ranks train every fold, rank 0 alone writes the study and
    prints it once, and the study resumes as a finished one."""
    root = make_tiny_emodb(tmp_path / "emodb", per_cell=1)
    out = tmp_path / "study"
    args = ["-m", "emohrnet_fast", "cv", "--corpus", "emodb", "--root", str(root)]
    args += ["--model", "centerloss_cnn_mfcc", "--protocol", "loso", "--folds", "0,1"]
    args += ["--epochs", "1", "--clip-seconds", "0.5", "--quiet", "--out", str(out)]
    args += ["--cache-dir", str(tmp_path / "cache")]
    stdout, _ = _torchrun(args, cwd=tmp_path)
    assert stdout.count("mean ± std over folds") == 1, stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [row["fold"] for row in summary["per_fold"]] == [0, 1]
    for fold in ("fold-00", "fold-01"):
        assert (out / fold / "predictions.json").is_file()
        assert [p.name for p in checkpoint.epoch_dirs(out / fold / "run")] == ["epoch-0001"]
    # Run again in one process: every fold is read back, nothing retrained.
    again = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == stdout
