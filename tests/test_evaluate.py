"""Metrics against hand-computed confusion matrices, and the saved report."""

from __future__ import annotations

import json
import math

import pytest

from emohrnet_fast.evaluate import Report

LABELS = ("angry", "happy", "neutral")


def test_metrics_match_a_hand_computed_confusion_matrix():
    # true:  angry x4, happy x3, neutral x3
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, 2, 1, 1, 0, 2, 2, 2]
    r = Report.from_predictions(y_true, y_pred, LABELS, meta={"protocol": "loso"})
    assert r.confusion == ((2, 1, 1), (1, 2, 0), (0, 0, 3))
    assert r.support == (4, 3, 3)
    assert r.wa == pytest.approx(7 / 10)
    assert r.recall == pytest.approx((2 / 4, 2 / 3, 3 / 3))
    assert r.precision == pytest.approx((2 / 3, 2 / 3, 3 / 4))
    f1 = [2 * p * q / (p + q) for p, q in zip(r.precision, r.recall, strict=True)]
    assert r.f1 == pytest.approx(tuple(f1))
    assert r.ua == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert r.macro_f1 == pytest.approx(sum(f1) / 3)
    assert r.meta == {"protocol": "loso"}


def test_absent_and_never_predicted_classes():
    # "neutral" never occurs (left out of UA / macro-F1); "happy" occurs but is never predicted.
    r = Report.from_predictions([0, 0, 1, 1], [0, 0, 0, 2], LABELS)
    assert r.recall[:2] == (1.0, 0.0) and math.isnan(r.recall[2])
    assert math.isnan(r.precision[1]) and r.precision[2] == 0.0
    assert r.f1[1] == 0.0 and math.isnan(r.f1[2])
    assert r.ua == pytest.approx(0.5)
    assert r.macro_f1 == pytest.approx((2 * (2 / 3) * 1 / (2 / 3 + 1) + 0.0) / 2)
    assert "absent from the truth" in r.markdown() and "neutral" in r.markdown()


def test_perfect_predictions():
    r = Report.from_predictions([2, 1, 0], [2, 1, 0], LABELS)
    assert (r.wa, r.ua, r.macro_f1) == (1.0, 1.0, 1.0)


def test_save_writes_json_markdown_and_png(tmp_path):
    r = Report.from_predictions([0, 1, 2, 2], [0, 1, 2, 1], LABELS, meta={"fold": 3})
    out = r.save(tmp_path / "report")
    data = json.loads((out / "report.json").read_text())
    assert data["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]] and data["meta"] == {"fold": 3}
    assert "| neutral | 2 | 100.0 | 50.0 | 66.7 |" in (out / "report.md").read_text()
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize(
    "y_true,y_pred,labels,pattern",
    [
        ([0, 1], [0], LABELS, r"y_true and y_pred differ in length: 2 vs 1"),
        ([], [], LABELS, r"y_true: expected at least one example"),
        ([0, 3], [0, 1], LABELS, r"y_true: class indices must be in \[0, 3\), got \[0, 3\]"),
        ([0, 1], [0, -1], LABELS, r"y_pred: class indices must be in \[0, 3\), got \[-1, 0\]"),
        ([0, 0], [0, 0], ("angry",), r"labels: expected at least 2 classes"),
    ],
)
def test_bad_input(y_true, y_pred, labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        Report.from_predictions(y_true, y_pred, labels)
