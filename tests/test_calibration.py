"""Temperature scaling and ECE: the math against hand-made cases, the model/checkpoint/predict
plumbing, and the cross-fitted calibration of a cross-validation study."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
from train_fixtures import TINY, tiny_corpus

import emohrnet_fast as ef
from emohrnet_fast import checkpoint
from emohrnet_fast.calibration import (
    TEMPERATURE_RANGE,
    assess,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)

ONE_EPOCH = TINY.replace(epochs=1)


def test_ece_by_hand():
    # Bin (0.8667, 0.9333]: confidences 0.9, 0.9 with one right -> |0.5 - 0.9| = 0.4 on 2 of 4.
    # Bin (0.5333, 0.6]: confidences 0.6, 0.6, both right -> |1 - 0.6| = 0.4 on 2 of 4.
    probabilities = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    targets = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.4)
    # One bin: mean confidence 0.75, accuracy 0.75 -> 0.
    assert expected_calibration_error(probabilities, targets, n_bins=1) == pytest.approx(0.0)


def test_ece_is_zero_when_confidence_matches_accuracy():
    # Confidence 0.7 on every example, right on exactly 70 % of them.
    probabilities = torch.tensor([[0.7, 0.3]], dtype=torch.float64).repeat(10, 1)
    targets = torch.tensor([0] * 7 + [1] * 3)
    assert expected_calibration_error(probabilities, targets) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_that_made_the_labels(true_temperature):
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(40_000, 5, generator=generator, dtype=torch.float64)
    targets = torch.multinomial(
        torch.softmax(logits / true_temperature, dim=1), 1, generator=generator
    ).squeeze(1)
    fitted = fit_temperature(logits, targets)
    assert fitted == pytest.approx(true_temperature, rel=0.03)
    # It is the optimum: a dense grid around it finds nothing better.
    best = negative_log_likelihood(logits, targets, fitted)
    for factor in torch.linspace(0.8, 1.25, 31).tolist():
        assert best <= negative_log_likelihood(logits, targets, fitted * factor) + 1e-9


def test_fit_temperature_stays_in_its_range():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    right = fit_temperature(logits, torch.tensor([0, 1]))  # always right: wants T -> 0
    wrong = fit_temperature(logits, torch.tensor([1, 0]))  # always wrong: wants T -> inf
    assert right == pytest.approx(TEMPERATURE_RANGE[0], rel=1e-4)
    assert wrong == pytest.approx(TEMPERATURE_RANGE[1], rel=1e-4)


def test_assess_reports_before_and_after():
    generator = torch.Generator().manual_seed(1)
    logits = 4.0 * torch.randn(2000, 4, generator=generator)
    targets = torch.multinomial(torch.softmax(logits / 3.0, dim=1), 1, generator=generator)
    targets = targets.squeeze(1)
    result = assess(logits, targets, fit_temperature(logits, targets))
    assert result.utterances == 2000
    assert result.nll_after < result.nll_before  # over-confident logits: T > 1 helps
    assert result.ece_after < result.ece_before
    assert result.temperature > 2.0


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: fit_temperature(torch.zeros(3), torch.zeros(3, dtype=torch.long)), "logits"),
        (lambda: fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), "one"),
        (lambda: fit_temperature(torch.zeros(2, 3), torch.tensor([0])), r"targets: .*\(2,\)"),
        (lambda: fit_temperature(torch.zeros(2, 3), torch.tensor([0, 3])), r"\[0, 3\)"),
        (lambda: fit_temperature(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), "integer"),
        (
            lambda: fit_temperature(torch.tensor([[math.nan, 0.0]]), torch.tensor([0])),
            "NaN or Inf",
        ),
        (
            lambda: expected_calibration_error(torch.ones(1, 2) / 2, torch.tensor([0]), 0),
            "n_bins=0",
        ),
    ],
)
def test_bad_input_names_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    corpus = tiny_corpus(folder)
    speakers = sorted({u.speaker for u in corpus})
    train_set = corpus.subset([i for i, u in enumerate(corpus) if u.speaker != speakers[0]])
    held_out = corpus.subset([i for i, u in enumerate(corpus) if u.speaker == speakers[0]])
    result = ef.train(TINY, train_set, out_dir=folder / "run", quiet=True)
    return result.model, held_out, folder


def test_calibrate_sets_the_temperature_predict_and_evaluate_use(trained, tmp_path):
    model, held_out, _ = trained
    assert model.temperature == 1.0
    result = ef.calibrate(model, held_out, clip_seconds=TINY.clip_seconds)
    try:
        assert model.temperature == result.temperature
        assert TEMPERATURE_RANGE[0] <= result.temperature <= TEMPERATURE_RANGE[1]
        assert result.nll_after <= result.nll_before + 1e-9  # fitted on this very set
        # Predictor scores are softmax(logits / T).
        predictor = ef.Predictor(model)
        clip = held_out.waveforms[0]
        logits = predictor.logits(clip, held_out.sample_rate)
        expected = torch.softmax(logits / result.temperature, dim=0)
        torch.testing.assert_close(predictor.probabilities(clip, held_out.sample_rate), expected)
        # evaluate() reports the ECE of the same scores.
        report = ef.evaluate(model, held_out, clip_seconds=TINY.clip_seconds)
        assert report.ece == pytest.approx(result.ece_after, abs=1e-6)
        assert "ECE" in report.markdown()
        # The temperature travels with checkpoints.
        checkpoint.save(tmp_path / "ckpt", model, checkpoint.model_card(model, TINY.model))
        assert ef.load_model(tmp_path / "ckpt").temperature == result.temperature
    finally:
        model.temperature = 1.0


@pytest.mark.parametrize("bad", [0.0, -1.0, "hot", None])
def test_checkpoint_with_a_bad_temperature_is_refused(trained, tmp_path, bad):
    model, _, _ = trained
    folder = checkpoint.save(tmp_path / "ckpt", model, checkpoint.model_card(model, TINY.model))
    meta = json.loads((folder / checkpoint.META_FILE).read_text())
    meta["temperature"] = bad
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="temperature"):
        ef.load_model(folder)


def test_checkpoint_without_a_temperature_loads_uncalibrated(trained, tmp_path):
    model, _, _ = trained
    folder = checkpoint.save(tmp_path / "ckpt", model, checkpoint.model_card(model, TINY.model))
    meta = json.loads((folder / checkpoint.META_FILE).read_text())
    del meta["temperature"]  # as written before calibration existed
    (folder / checkpoint.META_FILE).write_text(json.dumps(meta))
    assert ef.load_model(folder).temperature == 1.0


def test_study_cross_fits_the_temperature(trained, tmp_path, monkeypatch):
    _, _, folder = trained
    corpus = tiny_corpus(folder)
    result = ef.cross_validate(ONE_EPOCH, corpus, "loso", out_dir=tmp_path, quiet=True)
    saved = [
        json.loads((tmp_path / f"fold-{k:02d}" / "predictions.json").read_text())
        for k in range(len(result.folds))
    ]
    logits = [torch.tensor(s["logits"]) for s in saved]
    targets = [torch.tensor([s["labels"].index(t) for t in s["true"]]) for s in saved]
    for k, fold in enumerate(result.fold_calibration):
        others = [j for j in range(len(saved)) if j != k]
        expected = fit_temperature(
            torch.cat([logits[j] for j in others]), torch.cat([targets[j] for j in others])
        )
        assert fold.temperature == pytest.approx(expected)
        assert fold.utterances == len(targets[k])
        assert result.folds[k].ece == pytest.approx(fold.ece_before)
    pooled = result.calibration
    assert pooled.utterances == len(corpus)
    assert pooled.temperature == pytest.approx(
        fit_temperature(torch.cat(logits), torch.cat(targets))
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["calibration"]["pooled"]["ece_after"] == pytest.approx(pooled.ece_after)
    assert (
        "calibration (temperature fitted on the other folds'"
        in (tmp_path / "summary.md").read_text()
    )

    # A study written before logits were saved: rerunning it recomputes them from each fold's
    # final checkpoint, without training again.
    for k in range(len(saved)):
        old = {key: value for key, value in saved[k].items() if key != "logits"}
        (tmp_path / f"fold-{k:02d}" / "predictions.json").write_text(json.dumps(old))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(importlib.import_module("emohrnet_fast.crossval"), "train", no_training)
    again = ef.cross_validate(ONE_EPOCH, corpus, "loso", out_dir=tmp_path, quiet=True)
    for k in range(len(saved)):
        redone = json.loads((tmp_path / f"fold-{k:02d}" / "predictions.json").read_text())
        torch.testing.assert_close(torch.tensor(redone["logits"]), logits[k], atol=1e-4, rtol=0)
    assert again.calibration.temperature == pytest.approx(pooled.temperature, rel=1e-3)


def test_one_fold_study_has_no_calibration(trained, tmp_path):
    _, _, folder = trained
    result = ef.cross_validate(
        ONE_EPOCH, tiny_corpus(folder), "loso", folds=[0], out_dir=tmp_path, quiet=True
    )
    assert result.fold_calibration is None and result.calibration is None
    assert not math.isnan(result.folds[0].ece)
