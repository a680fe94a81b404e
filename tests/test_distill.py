"""Knowledge distillation: `train(..., teachers=)`, `cross_validate(..., teachers=)`, the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from train_fixtures import (
    TINY,
    assert_same_weights,
    interrupted_and_resumed,
    train_module,
    weights,
)

import emohrnet_fast as ef
from emohrnet_fast import checkpoint
from emohrnet_fast.cli import main
from emohrnet_fast.evaluate import dataset_logits
from emohrnet_fast.export import export_fold

ONE_EPOCH = TINY.replace(epochs=1)
STUDENT = TINY.replace(distill_weight=0.5, distill_temperature=3.0)


@pytest.fixture(scope="module")
def teachers(corpus):
    """Two one-epoch models of different seeds (eval mode, on the CPU)."""
    return [
        ef.train(ONE_EPOCH.replace(seed=seed), corpus, progress=False, quiet=True).model
        for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def teacher_study(corpus, tmp_path_factory):
    """A finished LOSO study of folds 0 and 1."""
    out = tmp_path_factory.mktemp("teacher")
    ef.cross_validate(ONE_EPOCH, corpus, "loso", folds=[0, 1], out_dir=out, quiet=True)
    return out


def test_teacher_probabilities_are_the_mean_softened_softmax(corpus, teachers):
    labels = teachers[0].labels
    temperature = 2.5
    got = train_module.teacher_probabilities(teachers, corpus, labels, temperature)
    expected = sum(
        torch.softmax(dataset_logits(t, corpus).double() / temperature, dim=1) for t in teachers
    ) / len(teachers)
    torch.testing.assert_close(got, expected.float())
    torch.testing.assert_close(got.sum(dim=1), torch.ones(len(corpus)))
    # Columns follow the requested class order, whatever the teacher's.
    flipped = train_module.teacher_probabilities(teachers, corpus, labels[::-1], temperature)
    torch.testing.assert_close(flipped, got.flip(1))
    # A higher temperature flattens one teacher's targets (the top probability never rises).
    cool = train_module.teacher_probabilities(teachers[:1], corpus, labels, temperature)
    hot = train_module.teacher_probabilities(teachers[:1], corpus, labels, 20.0)
    assert (hot.max(dim=1).values <= cool.max(dim=1).values + 1e-6).all()


def test_teacher_missing_a_training_class_is_refused(corpus, teachers):
    with pytest.raises(ValueError, match=r"teachers\[0\] knows classes .*not \['boredom'\]"):
        train_module.teacher_probabilities(teachers, corpus, ("angry", "boredom"), 2.0)
    with pytest.raises(ValueError, match="at least one model"):
        train_module.teacher_probabilities([], corpus, ("angry", "sad"), 2.0)
    two_classes = corpus.subset([i for i, u in enumerate(corpus) if u.label != "sad"])
    narrow = ef.train(ONE_EPOCH, two_classes, progress=False, quiet=True).model
    with pytest.raises(ValueError, match=r"not \['sad'\] of the training set"):
        ef.train(STUDENT, corpus, teachers=[narrow], quiet=True)


def test_at_full_weight_the_hard_labels_have_no_say(corpus, teachers):
    """distill_weight=1: training on shuffled labels ends on the same weights bit for bit."""
    # The center loss pulls towards the hard labels' centres: off, so they have no say at all.
    config = STUDENT.replace(distill_weight=1.0, center_loss_weight=0.0)
    true = ef.train(config, corpus, teachers=teachers, progress=False, quiet=True)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(corpus), generator=generator).tolist()
    shuffled_labels = [corpus.utterances[i].label for i in order]
    assert shuffled_labels != [u.label for u in corpus.utterances]
    import dataclasses

    relabelled = dataclasses.replace(
        corpus,
        utterances=[
            dataclasses.replace(u, label=label)
            for u, label in zip(corpus.utterances, shuffled_labels, strict=True)
        ],
    )
    shuffled = ef.train(config, relabelled, teachers=teachers, progress=False, quiet=True)
    assert_same_weights(weights(shuffled.model), weights(true.model))
    # At weight 0.5 the labels count again.
    half = config.replace(distill_weight=0.5)
    a = ef.train(half, corpus, teachers=teachers, progress=False, quiet=True)
    b = ef.train(half, relabelled, teachers=teachers, progress=False, quiet=True)
    assert a.history[-1]["train_loss"] != b.history[-1]["train_loss"]


def test_distillation_changes_training_and_resumes_exactly(corpus, teachers, tmp_path, monkeypatch):
    full = ef.train(
        STUDENT, corpus, teachers=teachers, out_dir=tmp_path / "full", progress=False, quiet=True
    )
    resumed = interrupted_and_resumed(
        STUDENT, corpus, tmp_path / "cut", monkeypatch, teachers=teachers
    )
    assert_same_weights(weights(resumed.model), weights(full.model))
    saved = json.loads((tmp_path / "full" / "train_config.json").read_text())["train_config"]
    assert saved["distill_weight"] == 0.5 and saved["distill_temperature"] == 3.0
    plain = ef.train(TINY, corpus, progress=False, quiet=True)
    assert full.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


@pytest.mark.parametrize(
    ("change", "with_teachers", "pattern"),
    [
        ({}, False, "0 given with TrainConfig.distill_weight=0.5: distillation needs both"),
        ({"distill_weight": 0.0}, True, "2 given with TrainConfig.distill_weight=0.0"),
        ({"distill_weight": 1.5}, True, r"TrainConfig.distill_weight=1.5: expected a weight"),
        ({"distill_weight": True}, True, r"TrainConfig.distill_weight=True"),
        ({"distill_temperature": 0}, True, r"TrainConfig.distill_temperature=0: expected"),
    ],
)
def test_bad_distillation_settings(corpus, teachers, change, with_teachers, pattern):
    with pytest.raises(ValueError, match=pattern):
        config = STUDENT.replace(**change)
        ef.train(config, corpus, teachers=teachers if with_teachers else (), quiet=True)


def test_a_study_distils_each_fold_from_the_teachers_same_fold(
    corpus, teacher_study, tmp_path, monkeypatch
):
    seen = []
    probabilities = train_module.teacher_probabilities

    def spy(teachers, dataset, *args, **kwargs):
        seen.append(({u.speaker for u in dataset.utterances}, len(teachers)))
        return probabilities(teachers, dataset, *args, **kwargs)

    monkeypatch.setattr(train_module, "teacher_probabilities", spy)
    out = tmp_path / "student"
    result = ef.cross_validate(
        STUDENT, corpus, "loso", folds=[0, 1], teachers=[teacher_study], out_dir=out, quiet=True
    )
    # Fold k's teachers scored fold k's training speakers: never its test speaker.
    assert seen == [({"08", "09", "10"}, 1), ({"03", "09", "10"}, 1)]
    assert len(result.folds) == 2
    study = json.loads((out / "study.json").read_text())
    assert study["teachers"] == [str(teacher_study.resolve())]
    assert study["train_config"]["distill_weight"] == 0.5
    export_fold(out, 0, tmp_path / "export")
    command = checkpoint.read_meta(tmp_path / "export")["card"]["commands"][0]
    assert f"--teacher {teacher_study.resolve()}" in command
    assert "--distill-weight 0.5" in command and "--distill-temperature 3.0" in command
    # Resuming with other teachers is refused, naming them.
    other = tmp_path / "other-teacher"
    shutil.copytree(teacher_study, other)
    with pytest.raises(ValueError, match=r"cannot resume the study .*\(teachers: saved"):
        ef.cross_validate(
            STUDENT, corpus, "loso", folds=[0, 1], teachers=[other], out_dir=out, quiet=True
        )


def test_teachers_must_be_finished_studies_of_the_same_folds(corpus, teacher_study, tmp_path):
    def study(teachers, folds=(0,), protocol="loso", config=STUDENT, **kwargs):
        return ef.cross_validate(
            config, corpus, protocol, folds=list(folds), teachers=teachers, quiet=True, **kwargs
        )

    with pytest.raises(ValueError, match=r"has not finished fold\(s\) \[2, 3\]"):
        study([teacher_study], folds=(1, 2, 3))
    with pytest.raises(ValueError, match=r"holds no study\.json"):
        study([tmp_path])
    with pytest.raises(ValueError, match=r"protocol: 'loso' there, 'speaker_kfold' here"):
        study([teacher_study], protocol="speaker_kfold", k=2)
    with pytest.raises(ValueError, match=r"1 given with TrainConfig\.distill_weight=0\.0"):
        study([teacher_study], config=ONE_EPOCH)
    with pytest.raises(ValueError, match=r"0 given with TrainConfig\.distill_weight=0\.5"):
        study([])
    tampered = tmp_path / "tampered"
    shutil.copytree(teacher_study, tampered, ignore=shutil.ignore_patterns("run"))
    file = tampered / "fold-00" / "predictions.json"
    saved = json.loads(file.read_text())
    saved["files"], saved["true"] = saved["files"][::-1], saved["true"][::-1]
    file.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"teachers: fold 0 of .*tampered tested other"):
        study([tampered])


def test_cli_distillation(corpus, teacher_study, tmp_path, capsys):
    root = corpus.root
    data = ["--corpus", "emodb", "--root", str(root), "--quiet", "--device", "cpu"]
    tiny = ["--model", "centerloss_cnn_mfcc", "--epochs", "1", "--clip-seconds", "0.5"]
    flags = ["--distill-weight", "0.7", "--distill-temperature", "4"]
    out = tmp_path / "cv"
    argv = ["cv", *data, *tiny, *flags, "--folds", "1", "--teacher", str(teacher_study)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "loso (speaker-independent), 1 fold(s)" in capsys.readouterr().out
    config = json.loads((out / "study.json").read_text())["train_config"]
    assert (config["distill_weight"], config["distill_temperature"]) == (0.7, 4.0)
    teacher = teacher_study / "fold-00" / "run"
    run = tmp_path / "run"
    argv = ["train", *data, *tiny, *flags, "--teacher", str(teacher), "--out", str(run)]
    assert main(argv) == 0 and "checkpoint:" in capsys.readouterr().out
    assert main(["train", *data, *tiny, "--teacher", str(teacher), "--out", str(run / "x")]) == 1
    assert "distillation needs both" in capsys.readouterr().err
