"""Training on real EmoDB clips: learning, checkpoints, resume after kill -9, bad input."""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from ef_testing import HAS_CUDA
from train_fixtures import (
    TINY,
    assert_same_weights,
    interrupted_and_resumed,
    weights,
)

import emohrnet_fast as ef
from emohrnet_fast import checkpoint

train_module = importlib.import_module("emohrnet_fast.train")  # ef.train is the function


@pytest.fixture(scope="module")
def reference_run(corpus, tmp_path_factory):
    """TINY trained for 3 epochs without interruption."""
    out = tmp_path_factory.mktemp("reference")
    result = ef.train(TINY, corpus, out_dir=out, progress=False, quiet=True)
    return result, out


# bf16: autocast on the CPU too (fast on CPUs with native bf16 units, e.g. Intel AMX).
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_set_is_learned_to_100_percent(corpus, precision):
    config = TINY.replace(
        precision=precision,
        epochs=40,
        lr=1e-2,
        clip_seconds=1.0,
        spec_augment=None,
        model_overrides={"channels": (16, 16, 16, 16), "embedding_dim": 16, "dropout": 0.0},
    )
    result = ef.train(config, corpus, progress=False, quiet=True)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    # The running accuracy counts random crops while the weights still move: one crop of 24
    # missed in the last epoch happens (bf16, or fp32 with another thread count's rounding).
    # The fitted model scoring every training clip right (below) is the 100 % check.
    assert result.history[-1]["train_acc"] >= 0.95
    report = ef.evaluate(result.model, corpus, clip_seconds=1.0)
    assert report.wa == 1.0 and report.ua == 1.0


def test_run_folder_checkpoints_and_load_model(reference_run, corpus):
    result, out = reference_run
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    kept = checkpoint.epoch_dirs(out)
    assert [p.name for p in kept] == ["epoch-0003"]  # no val set: only the last is kept
    assert result.last_checkpoint == kept[-1] and result.best_checkpoint is None
    meta = checkpoint.read_meta(kept[-1])
    assert meta["labels"] == list(corpus.labels) and meta["epoch"] == 3
    assert meta["model"] == "centerloss_cnn_mfcc" and meta["frontend"]["n_mfcc"] == 40
    assert meta["train_config"] == TINY.to_dict()
    assert (out / "history.csv").read_text().count("\n") == 4  # header + 3 epochs
    assert not list(out.rglob("*.tmp"))
    loaded = ef.load_model(out)
    assert loaded.labels == corpus.labels and not loaded.training
    assert_same_weights(weights(loaded), weights(result.model))
    assert float(loaded.input_norm.std) != 1.0  # the training statistics travel with it
    # The loaded model scores exactly like the trained one.
    a = ef.evaluate(loaded, corpus, clip_seconds=0.5)
    b = ef.evaluate(result.model, corpus, clip_seconds=0.5)
    assert a.confusion == b.confusion


def test_best_checkpoint_follows_validation_ua(corpus, tmp_path):
    train_set = corpus.subset([i for i, u in enumerate(corpus) if u.speaker != "03"])
    val_set = corpus.subset([i for i, u in enumerate(corpus) if u.speaker == "03"])
    result = ef.train(TINY, train_set, val_set, out_dir=tmp_path, progress=False, quiet=True)
    uas = [row["val_ua"] for row in result.history]
    best = 1 + max(range(len(uas)), key=lambda i: (uas[i], -i))
    assert result.best_epoch == best
    assert result.best_checkpoint == tmp_path / "checkpoints" / f"epoch-{best:04d}"
    assert checkpoint.resolve(tmp_path) == result.best_checkpoint
    assert result.val_report.labels == corpus.labels


def test_resume_continues_exactly(reference_run, corpus, tmp_path, monkeypatch):
    resumed = interrupted_and_resumed(TINY, corpus, tmp_path, monkeypatch)
    assert resumed.resumed_from == 2 and len(resumed.history) == 3
    reference, _ = reference_run
    assert_same_weights(weights(resumed.model), weights(reference.model))
    assert resumed.history[-1]["train_loss"] == reference.history[-1]["train_loss"]


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["centerloss_cnn_mfcc", "emohrnet_compact"])
def test_cuda_training_with_the_fused_optimizer_resumes(corpus, tmp_path, monkeypatch, model):
    """On CUDA: resident data, fused front-end and masks, fused Adam (its step count lives on
    the GPU), channels_last; an interrupted run resumes to the uninterrupted one's weights up
    to cuDNN's nondeterminism."""
    overrides = TINY.model_overrides if model == TINY.model else {"dropout": 0.0}
    config = TINY.replace(device="cuda", model=model, model_overrides=overrides)
    made = []
    original_init = train_module._Trainer.__init__

    def spy(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        made.append(self.optimizer)

    monkeypatch.setattr(train_module._Trainer, "__init__", spy)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    assert made[0].defaults["fused"] is True
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in full.history)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert resumed.resumed_from == 2
    a, b = weights(resumed.model), weights(full.model)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4, msg=key)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_graph_training_matches_eager(corpus):
    """``compile_mode="reduce-overhead"``: the model's forward and backward replay as CUDA
    graphs and train as the eager model does. Adam's steps amplify compiled rounding in
    parameters whose gradients are near zero, so the losses are compared, not the weights."""
    config = TINY.replace(device="cuda", model="emohrnet_compact", model_overrides={"dropout": 0.0})
    graphed = config.replace(compile=True, compile_mode="reduce-overhead")
    eager = ef.train(config, corpus, progress=False, quiet=True)
    compiled = ef.train(graphed, corpus, progress=False, quiet=True)
    losses = [row["train_loss"] for row in compiled.history]
    assert all(math.isfinite(loss) for loss in losses)
    expected = [row["train_loss"] for row in eager.history]
    assert losses[0] == pytest.approx(expected[0], rel=1e-2)  # mostly the first steps
    assert losses == pytest.approx(expected, rel=0.1)


def test_compile_mode_is_validated_and_reaches_torch_compile(corpus, monkeypatch):
    with pytest.raises(ValueError, match="compile_mode"):
        TINY.replace(compile_mode="max-autotune")
    modes = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: modes.append(mode) or model)
    config = TINY.replace(epochs=1, compile=True, compile_mode="reduce-overhead")
    ef.train(config, corpus, progress=False, quiet=True)
    assert modes == ["reduce-overhead"]


KILL_SCRIPT = """
import importlib, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from train_fixtures import (
    TINY,
    assert_same_weights,
    interrupted_and_resumed,
    tiny_corpus,
    weights,
)
import emohrnet_fast as ef
train_module = importlib.import_module("emohrnet_fast.train")  # the package's train is the function

corpus = tiny_corpus(Path({data!r}))
original = train_module._Trainer._train_epoch
def slow_epoch(self, epoch, progress):  # room to be killed inside epoch 2
    if epoch >= 2:
        print("in-epoch", epoch, flush=True)
        time.sleep(30)
    return original(self, epoch, progress)
train_module._Trainer._train_epoch = slow_epoch
ef.train(TINY, corpus, out_dir={out!r}, progress=False, quiet=True)
"""


def test_kill_9_mid_epoch_loses_at_most_that_epoch(reference_run, corpus, tmp_path):
    out = tmp_path / "run"
    script = KILL_SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(tmp_path / "data"), out=str(out)
    )
    process = subprocess.Popen(
        [sys.executable, "-P", "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()  # blocks until epoch 1 is saved and epoch 2 began
        assert line.startswith("in-epoch 2"), line
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert [p.name for p in checkpoint.epoch_dirs(out)] == ["epoch-0001"]
    assert not list(out.rglob("*.tmp"))
    resumed = ef.train(TINY, corpus, out_dir=out, resume=True, progress=False, quiet=True)
    assert resumed.resumed_from == 1 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
    reference, _ = reference_run
    assert_same_weights(weights(resumed.model), weights(reference.model))


def test_resume_clears_what_a_kill_inside_save_left(corpus, tmp_path):
    ef.train(TINY.replace(epochs=1), corpus, out_dir=tmp_path, progress=False, quiet=True)
    folder = tmp_path / "checkpoints"
    # Killed between save()'s two renames: the complete checkpoint is only under its .old name.
    (folder / "epoch-0001").rename(folder / ".epoch-0001.old")
    partial = folder / ".epoch-0002.k1ll3d.tmp"  # and a later save's half-written folder
    partial.mkdir()
    (partial / checkpoint.MODEL_FILE).write_bytes(b"\0" * 100)
    resumed = ef.train(
        TINY.replace(epochs=2), corpus, out_dir=tmp_path, resume=True, progress=False, quiet=True
    )
    assert resumed.resumed_from == 1 and [r["epoch"] for r in resumed.history] == [1, 2]
    assert [p.name for p in folder.iterdir()] == ["epoch-0002"]


def test_full_disk_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    import safetensors.torch

    real_save = safetensors.torch.save_file
    calls = []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's checkpoint
            real_save(*args, **kwargs)  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(OSError, match=r"No space left.*epoch-0001 is intact"):
        ef.train(TINY, corpus, out_dir=tmp_path, progress=False, quiet=True)
    assert [p.name for p in checkpoint.epoch_dirs(tmp_path)] == ["epoch-0001"]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    assert ef.load_model(tmp_path).labels == corpus.labels


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    ef.train(TINY.replace(epochs=1), corpus, out_dir=tmp_path, progress=False, quiet=True)
    waveforms = corpus.waveforms
    poisoned = type(waveforms)(
        torch.full_like(waveforms.data, float("nan")),
        waveforms.offsets,
        waveforms.lengths,
        waveforms.sample_rate,
    )
    bad = dataclasses.replace(corpus, waveforms=poisoned)
    with pytest.raises(ef.TrainingDiverged, match=r"NaN or infinite in epoch 2.*epoch-0001"):
        ef.train(TINY.replace(epochs=2), bad, out_dir=tmp_path, resume=True, quiet=True)
    assert [p.name for p in checkpoint.epoch_dirs(tmp_path)] == ["epoch-0001"]


def test_resume_with_another_config_names_the_difference(reference_run, corpus):
    _, out = reference_run
    with pytest.raises(ValueError, match=r"different config \(lr: saved 0.003, now 0.001"):
        ef.train(TINY.replace(lr=1e-3), corpus, out_dir=out, resume=True, quiet=True)
    with pytest.raises(ValueError, match="already holds a training run"):
        ef.train(TINY, corpus, out_dir=out, quiet=True)
    done = ef.train(TINY, corpus, out_dir=out, resume=True, quiet=True)  # nothing left to do
    assert done.resumed_from == 3 and len(done.history) == 3


def test_saved_files_get_the_modes_of_plain_files(reference_run):
    """Atomic writes go through mkstemp / mkdtemp, which are owner-only: the saved run must
    still be readable as any file the user writes is (0666 / 0777 less the umask)."""
    _, out = reference_run
    mask = os.umask(0)
    os.umask(mask)
    epoch = checkpoint.epoch_dirs(out)[-1]
    for path in [epoch, *epoch.iterdir(), out / "history.csv", out / "train_config.json"]:
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert path.stat().st_mode & 0o777 == want, path


def test_resume_on_other_data_is_refused(reference_run, corpus, tmp_path):
    """The checkpoint's fingerprint of its training (and validation) utterances must match;
    a copy of the same audio in another folder still does."""
    _, out = reference_run
    fewer = corpus.subset(list(range(len(corpus) - 2)))
    with pytest.raises(ValueError, match=r"trained with another train_set \(other files"):
        ef.train(TINY.replace(epochs=4), fewer, out_dir=out, resume=True, quiet=True)
    moved = dataclasses.replace(
        corpus,
        root=tmp_path,
        utterances=tuple(dataclasses.replace(u, path=tmp_path / u.path.name) for u in corpus),
    )
    assert moved.fingerprint() == corpus.fingerprint()
    relabelled = dataclasses.replace(
        corpus, utterances=(dataclasses.replace(corpus[0], speaker="99"), *corpus.utterances[1:])
    )
    assert relabelled.fingerprint() != corpus.fingerprint()
    run = tmp_path / "validated"
    ef.train(TINY.replace(epochs=1), corpus, corpus.subset([0, 1]), out_dir=run, quiet=True)
    with pytest.raises(ValueError, match="trained with another val_set"):
        ef.train(TINY, corpus, corpus.subset([0, 2]), out_dir=run, resume=True, quiet=True)


def test_evaluate_matches_hand_computed_predictions(reference_run, corpus):
    model = reference_run[0].model
    from emohrnet_fast.evaluate import dataset_logits
    from emohrnet_fast.features import FrontEnd

    logits = dataset_logits(model, corpus, clip_seconds=0.5)
    # The same logits by hand: centred 0.5-s crops, the front-end, the model itself (no
    # Predictor, no folded BatchNorm), one clip at a time.
    crops, _ = corpus.waveforms.crops(
        torch.arange(len(corpus)), round(0.5 * corpus.sample_rate), 0.5
    )
    with torch.no_grad():
        by_hand = torch.cat(
            [
                model.eval()(FrontEnd(model.default_frontend)(c[None]).unsqueeze(1)).logits
                for c in crops
            ]
        )
    torch.testing.assert_close(logits, by_hand, rtol=1e-4, atol=1e-4)
    predicted = logits.argmax(dim=1)
    truth = corpus.targets
    report = ef.evaluate(model, corpus, clip_seconds=0.5, batch_size=5)
    k = len(corpus.labels)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(truth.tolist(), predicted.tolist(), strict=True):
        confusion[t][p] += 1
    assert [list(row) for row in report.confusion] == confusion
    assert report.wa == pytest.approx(sum(confusion[i][i] for i in range(k)) / len(corpus))


def test_evaluate_whole_utterances_and_label_checks(reference_run, corpus):
    model = reference_run[0].model
    report = ef.evaluate(model, corpus)  # whole 2-s clips
    assert sum(report.support) == len(corpus)
    other = type(model.labels)(("happy", "sad", "angry"))
    model.labels, saved = other, model.labels
    try:
        with pytest.raises(ValueError, match=r"labels the model was not trained on: \['neutral'\]"):
            ef.evaluate(model, corpus)
    finally:
        model.labels = saved


def test_whole_utterances_score_each_clip_as_predict_does(reference_run, corpus):
    """Variable lengths: no clip is padded to fit a longer one in its batch, and a clip below
    the model's minimum is padded to it with a warning, exactly as Predictor does."""
    from emohrnet_fast.data.corpus import Waveforms
    from emohrnet_fast.evaluate import dataset_logits

    model = reference_run[0].model
    predictor = ef.Predictor(model, device="cpu")
    rate = corpus.sample_rate
    cuts = (rate, predictor.min_samples // 2, rate // 2, rate, rate // 2 + 1, 2 * rate)
    clips = [corpus.waveforms[i][: cuts[i % len(cuts)]] for i in range(len(corpus))]
    lengths = torch.tensor([clip.numel() for clip in clips])
    varied = dataclasses.replace(
        corpus, waveforms=Waveforms(torch.cat(clips), lengths.cumsum(0) - lengths, lengths, rate)
    )
    with pytest.warns(UserWarning, match="4 utterances of dataset 'emodb' are shorter"):
        logits = dataset_logits(model, varied, batch_size=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same short-clip warning, once per clip
        alone = torch.stack([predictor.logits(clip, rate) for clip in clips])
    torch.testing.assert_close(logits, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("case", "error", "pattern"),
    [
        ("empty", ValueError, "train_set .* is empty"),
        ("no_audio", ValueError, "waveforms not loaded"),
        ("one_label", ValueError, "need at least 2"),
        ("unseen_val", ValueError, r"val_set has labels never seen in train_set: \['sad'\]"),
        ("rate", ValueError, "at 8000 Hz but the model's front-end expects 16000 Hz"),
        ("not_corpus", TypeError, "train_set: expected a Corpus"),
        ("none", TypeError, "train_set: expected a Corpus, got NoneType"),
        ("resume_no_dir", ValueError, "resume=True needs out_dir"),
    ],
)
def test_bad_training_input(corpus, case, error, pattern):
    import dataclasses

    train_set, val_set, kwargs = corpus, None, {}
    if case == "empty":
        train_set = corpus.subset([])
    elif case == "no_audio":
        train_set = dataclasses.replace(corpus, waveforms=None)
    elif case == "one_label":
        train_set = corpus.subset([i for i, u in enumerate(corpus) if u.label == "angry"])
    elif case == "unseen_val":
        train_set = corpus.subset([i for i, u in enumerate(corpus) if u.label != "sad"])
        val_set = corpus
    elif case == "rate":
        train_set = dataclasses.replace(corpus, sample_rate=8000)
    elif case == "not_corpus":
        train_set = corpus.waveforms
    elif case == "none":
        train_set = None
    elif case == "resume_no_dir":
        kwargs = {"resume": True}
    with pytest.raises(error, match=pattern):
        ef.train(TINY, train_set, val_set, quiet=True, **kwargs)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"model": "resnet50"}, "TrainConfig.model='resnet50': expected one of"),
        ({"optimizer": "sgd"}, "TrainConfig.optimizer='sgd'"),
        ({"precision": "fp8"}, "TrainConfig.precision='fp8'"),
        ({"batch_size": 0}, "TrainConfig.batch_size=0"),
        ({"lr": -1.0}, "TrainConfig.lr=-1.0"),
        ({"clip_seconds": 0}, "TrainConfig.clip_seconds=0"),
        ({"device": "tpu"}, "TrainConfig.device='tpu'"),
        ({"mixup": -0.2}, r"TrainConfig.mixup=-0.2: expected a Beta concentration"),
        ({"mixup": 0.4}, "mixup=0.4 with centerloss_cnn_mfcc's center loss"),
        ({"speed_perturb": 0.8}, r"TrainConfig.speed_perturb=0.8: expected a relative rate"),
        ({"speed_perturb": -0.1}, r"TrainConfig.speed_perturb=-0.1"),
        ({"balance_classes": 1}, r"TrainConfig.balance_classes=1: expected True or False"),
        ({"ema_decay": 1.0}, r"TrainConfig.ema_decay=1.0: expected a decay in \[0, 1\)"),
        ({"ema_decay": -0.1}, r"TrainConfig.ema_decay=-0.1"),
        ({"ema_decay": True}, r"TrainConfig.ema_decay=True"),
        ({"seed": 2**63}, r"TrainConfig.seed=9223372036854775808: expected an integer in \[0"),
    ],
)
def test_bad_train_config(change, pattern, corpus):
    with pytest.raises(ValueError, match=pattern):
        ef.train(TINY.replace(**change), corpus, quiet=True)


def test_mixup_changes_training_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    """mixup's lam comes from (seed, step) and its partners from the epoch's generator, so an
    interrupted run resumes to the uninterrupted one's weights bit for bit."""
    config = TINY.replace(mixup=0.4, center_loss_weight=0.0)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert_same_weights(weights(resumed.model), weights(full.model))
    plain = ef.train(config.replace(mixup=0.0), corpus, progress=False, quiet=True)
    assert full.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_speed_perturbation_changes_training_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    """The rates come from the epoch's generator like the crops, so a resumed run ends on the
    uninterrupted one's weights."""
    config = TINY.replace(speed_perturb=0.1)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert_same_weights(weights(resumed.model), weights(full.model))
    plain = ef.train(config.replace(speed_perturb=0.0), corpus, progress=False, quiet=True)
    assert full.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_balanced_classes_weight_the_loss_by_inverse_frequency(corpus, monkeypatch):
    """On a training set of 8 angry, 4 neutral and 2 sad clips the weights are n / (3 n_c)."""
    keep = {"angry": 8, "neutral": 4, "sad": 2}
    indices = []
    for i, utterance in enumerate(corpus.utterances):
        if keep[utterance.label] > 0:
            keep[utterance.label] -= 1
            indices.append(i)
    imbalanced = corpus.subset(indices)
    seen = []
    cross_entropy = train_module.F.cross_entropy

    def spy(logits, target, weight=None, **kwargs):
        seen.append(weight)
        return cross_entropy(logits, target, weight=weight, **kwargs)

    monkeypatch.setattr(train_module.F, "cross_entropy", spy)
    config = TINY.replace(balance_classes=True, epochs=1)
    balanced = ef.train(config, imbalanced, progress=False, quiet=True)
    order = [balanced.model.labels.index(name) for name in ("angry", "neutral", "sad")]
    torch.testing.assert_close(seen[0][order], torch.tensor([14 / 24, 14 / 12, 14 / 6]))
    seen.clear()
    plain = ef.train(config.replace(balance_classes=False), imbalanced, progress=False, quiet=True)
    assert seen and all(weight is None for weight in seen)
    assert balanced.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_config_round_trips_through_json():
    assert ef.TrainConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['momentum'\]"):
        ef.TrainConfig.from_dict({**TINY.to_dict(), "momentum": 0.9})


def test_progress_bar_and_summary_lines(corpus, capsys):
    ef.train(TINY.replace(epochs=1), corpus, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "clips/s" in err


@pytest.mark.parametrize(
    ("model", "policy", "expected"),
    [
        ("centerloss_cnn_mfcc", "auto", None),  # the center-loss paper trains without it
        ("emohrnet_small", "auto", ef.SpecAugmentConfig()),  # EmoHRNet's paper uses it
        ("emohrnet_small", None, None),
        ("centerloss_cnn_mfcc", ef.SpecAugmentConfig(freq_masks=1), ef.SpecAugmentConfig(1)),
    ],
)
def test_spec_augment_policy(corpus, model, policy, expected):
    config = TINY.replace(model=model, model_overrides={}, spec_augment=policy)
    env = train_module._Distributed()
    trainer = train_module._Trainer(
        config, corpus, None, corpus.labels, torch.device("cpu"), env, run=None
    )
    if expected is None:
        assert trainer.augment is None
    else:
        augment = trainer.augment
        assert (augment.freq_masks, augment.freq_width, augment.time_masks) == (
            expected.freq_masks,
            expected.freq_width,
            expected.time_masks,
        )


def test_weight_average_follows_its_recurrence():
    """Parameters and float buffers blend as avg + (1 - d)(model - avg) with the warm-up
    d = min(decay, (1 + step) / (10 + step)); BatchNorm's step counter is copied."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = train_module.WeightAverage(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(30):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        model(torch.randn(5, 3))  # moves the running statistics
        average.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                expected[key] = expected[key] + (1 - d) * (value - expected[key])
            else:
                expected[key] = value.clone()
    got = average.average.state_dict()
    assert got["1.num_batches_tracked"].item() == 30
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-6, atol=1e-6, msg=key)
    assert not any(p.requires_grad for p in average.average.parameters())
    assert not average.average.training


def test_ema_saves_the_average_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    """With ema_decay the run returns and saves the average; the optimised weights (kept for
    resume) are those of the same run without it, and a resumed run ends on the same
    average bit for bit."""
    config = TINY.replace(ema_decay=0.9)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    last = checkpoint.epoch_dirs(tmp_path / "full")[-1]
    assert_same_weights(weights(ef.load_model(last)), weights(full.model))
    state = torch.load(last / checkpoint.STATE_FILE, weights_only=True)
    plain = ef.train(config.replace(ema_decay=0.0), corpus, progress=False, quiet=True)
    assert_same_weights(state["optimised_model"], weights(plain.model))
    assert not torch.equal(full.model.classifier.weight, plain.model.classifier.weight)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert_same_weights(weights(resumed.model), weights(full.model))


def test_resume_treats_fields_newer_than_the_checkpoint_as_their_defaults(corpus, tmp_path):
    """A checkpoint written before a TrainConfig field existed resumes when the field has its
    default, and names the field when it does not."""
    run = tmp_path / "run"
    ef.train(TINY.replace(epochs=1), corpus, out_dir=run, progress=False, quiet=True)
    card = checkpoint.epoch_dirs(run)[-1] / checkpoint.META_FILE
    meta = json.loads(card.read_text())
    del meta["train_config"]["ema_decay"], meta["train_config"]["speaker_norm"]
    card.write_text(json.dumps(meta))
    changed = TINY.replace(epochs=2, ema_decay=0.5)
    with pytest.raises(ValueError, match=r"ema_decay: saved 0.0, now 0.5"):
        ef.train(changed, corpus, out_dir=run, resume=True, quiet=True)
    resumed = ef.train(TINY.replace(epochs=2), corpus, out_dir=run, resume=True, quiet=True)
    assert resumed.resumed_from == 1 and len(resumed.history) == 2
