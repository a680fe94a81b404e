"""Ensembles of finished cross-validation studies (`ensemble_studies`, `emohrnet-fast ensemble`)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from train_fixtures import TINY

import emohrnet_fast as ef
from emohrnet_fast.cli import main
from emohrnet_fast.export import export_fold

ONE_EPOCH = TINY.replace(epochs=1)


@pytest.fixture(scope="module")
def seeds(corpus, tmp_path_factory):
    """Two seeds of one recipe, LOSO folds 0-2 (seed 0) and 1-3 (seed 1)."""
    root = tmp_path_factory.mktemp("seeds")
    for seed, folds in ((0, [0, 1, 2]), (1, [1, 2, 3])):
        ef.cross_validate(
            ONE_EPOCH.replace(seed=seed),
            corpus,
            "loso",
            folds=folds,
            out_dir=root / f"seed{seed}",
            quiet=True,
        )
    return root / "seed0", root / "seed1"


def _probabilities(study, fold):
    saved = json.loads((study / f"fold-{fold:02d}" / "predictions.json").read_text())
    return saved, torch.softmax(torch.tensor(saved["logits"], dtype=torch.float64), dim=1)


def test_ensemble_averages_the_members_softmax_on_common_folds(seeds, tmp_path):
    result = ef.ensemble_studies(seeds, out_dir=tmp_path)
    assert [r.meta["fold"] for r in result.folds] == [1, 2]  # the folds both finished
    assert [r.meta["test_groups"] for r in result.folds] == [["08"], ["09"]]
    for report in result.folds:
        fold = report.meta["fold"]
        (a, pa), (b, pb) = _probabilities(seeds[0], fold), _probabilities(seeds[1], fold)
        assert a["labels"] == b["labels"]  # same class order: the mean is column by column
        mean = (pa + pb) / 2
        index = {name: i for i, name in enumerate(a["labels"])}
        truth = torch.tensor([index[t] for t in a["true"]])
        expected = (mean.argmax(dim=1) == truth).double().mean().item()
        assert report.wa == pytest.approx(expected)
        saved, stored = _probabilities(tmp_path, fold)
        torch.testing.assert_close(stored, mean, atol=1e-4, rtol=0)  # log of the mean, 5 d.p.
        assert saved["pred"] == [a["labels"][i] for i in mean.argmax(dim=1).tolist()]
    # Each member's figures are its own study's, restricted to the common folds.
    for member, study in zip(result.members, seeds, strict=True):
        assert member.out_dir == study
        assert [r.meta["fold"] for r in member.folds] == [1, 2]
        own = {
            r["fold"]: r["ua"] for r in json.loads((study / "summary.json").read_text())["per_fold"]
        }
        assert [r.ua for r in member.folds] == pytest.approx([own[1], own[2]])
    text = result.markdown()
    assert "ensemble of 2 studies (mean softmax)" in text and str(seeds[1]) in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["folds"] == [1, 2] and len(summary["ensemble_of"]) == 2
    assert [m["train_config"]["seed"] for m in summary["ensemble_of"]] == [0, 1]
    assert [m["differs_from_first"] for m in summary["ensemble_of"]] == [[], ["seed=1"]]
    assert [m.differences for m in result.members] == [[], ["seed=1"]]
    assert f"| {seeds[1]} | seed=1 |" in text and f"| {seeds[0]} | - |" in text
    assert summary["mean"]["ua"] == pytest.approx(result.mean["ua"])
    assert (tmp_path / "pooled" / "report.json").exists()
    assert (tmp_path / "fold-02" / "report" / "confusion.png").stat().st_size > 0
    with pytest.raises(ValueError, match="is an ensemble of studies, which holds no models"):
        export_fold(tmp_path, 1, tmp_path / "export")
    with pytest.raises(ValueError, match="is itself an ensemble; list its member studies"):
        ef.ensemble_studies([tmp_path, seeds[0]])


def test_a_study_with_itself_scores_as_the_study(seeds):
    result = ef.ensemble_studies([seeds[0], seeds[0]])
    own = json.loads((seeds[0] / "summary.json").read_text())
    assert result.mean["ua"] == pytest.approx(own["mean"]["ua"])
    assert result.pooled.confusion == result.members[0].pooled.confusion


def test_members_must_share_corpus_split_and_test_utterances(corpus, seeds, tmp_path):
    with pytest.raises(ValueError, match="at least two studies, got 1"):
        ef.ensemble_studies([seeds[0]])
    with pytest.raises(ValueError, match="is a member study: it would be overwritten"):
        ef.ensemble_studies(seeds, out_dir=seeds[1])
    with pytest.raises(ValueError, match=r"holds no study\.json"):
        ef.ensemble_studies([seeds[0], tmp_path])
    kfold = tmp_path / "kfold"
    ef.cross_validate(ONE_EPOCH, corpus, "speaker_kfold", k=2, folds=[1], out_dir=kfold)
    with pytest.raises(ValueError, match=r"protocol: 'loso' in .*seed0, 'speaker_kfold' in"):
        ef.ensemble_studies([seeds[0], kfold])
    normalised = tmp_path / "normalised"
    ef.cross_validate(
        ONE_EPOCH.replace(speaker_norm=True), corpus, "loso", folds=[1], out_dir=normalised
    )
    with pytest.raises(ValueError, match=r"speaker_norm: False in .*, True in"):
        ef.ensemble_studies([seeds[0], normalised])
    # Fold 0 of seed 0 against fold 3 only of seed 1: nothing in common.
    only3 = tmp_path / "only3"
    shutil.copytree(seeds[1], only3)
    for fold in (1, 2):
        shutil.rmtree(only3 / f"fold-{fold:02d}")
    shutil.rmtree(only3 / "fold-03" / "run", ignore_errors=True)
    first0 = tmp_path / "first0"
    shutil.copytree(seeds[0], first0, ignore=shutil.ignore_patterns("fold-01", "fold-02"))
    with pytest.raises(ValueError, match=r"no fold is finished in every study"):
        ef.ensemble_studies([first0, only3])
    # A fold whose test utterances differ (another corpus copy, another split).
    tampered = tmp_path / "tampered"
    shutil.copytree(seeds[1], tampered, ignore=shutil.ignore_patterns("run"))
    file = tampered / "fold-01" / "predictions.json"
    saved = json.loads(file.read_text())
    saved["files"] = saved["files"][::-1]
    saved["true"] = saved["true"][::-1]
    saved["logits"] = saved["logits"][::-1]
    file.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"fold 1 of .*tampered tested other utterances"):
        ef.ensemble_studies([seeds[0], tampered])
    # LOSO folds do not depend on k or the split seed: a study run with others still joins.
    other_k = tmp_path / "other_k"
    shutil.copytree(seeds[1], other_k, ignore=shutil.ignore_patterns("run"))
    study = json.loads((other_k / "study.json").read_text())
    (other_k / "study.json").write_text(json.dumps({**study, "k": 7, "split_seed": 3}))
    assert [r.meta["fold"] for r in ef.ensemble_studies([seeds[0], other_k]).folds] == [1, 2]


def test_a_moved_study_still_matches(seeds, tmp_path):
    """Test files are compared relative to each study's corpus root."""
    moved = tmp_path / "moved"
    shutil.copytree(seeds[1], moved, ignore=shutil.ignore_patterns("run"))
    study = json.loads((moved / "study.json").read_text())
    old_root = study["root"]
    study["root"] = "/elsewhere/emodb"
    (moved / "study.json").write_text(json.dumps(study))
    for file in moved.glob("fold-*/predictions.json"):
        saved = json.loads(file.read_text())
        saved["files"] = [f.replace(old_root, "/elsewhere/emodb") for f in saved["files"]]
        file.write_text(json.dumps(saved))
    moved_result = ef.ensemble_studies([seeds[0], moved])
    assert moved_result.mean == pytest.approx(ef.ensemble_studies(seeds).mean)


def test_cli_ensemble(seeds, tmp_path, capsys):
    assert main(["ensemble", str(seeds[0]), str(seeds[1]), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 2 studies" in out and "| member |" in out
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["folds"] == [1, 2]
    assert main(["ensemble", str(seeds[0])]) == 1
    assert "an ensemble needs at least two studies" in capsys.readouterr().err
