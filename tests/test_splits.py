"""splits(): speaker-independent protocols never share a speaker across train and test."""

from __future__ import annotations

from collections import Counter

import corpus_fixtures as fx
import pytest
import torch
from ef_testing import EMODB

import emohrnet_fast as ef

splits = ef.data.splits


@pytest.fixture(scope="module")
def emodb():
    if not EMODB.is_dir():
        pytest.skip(f"EmoDB not found at {EMODB} (set EMOHRNET_EMODB)")
    return ef.data.load_corpus("emodb", EMODB, load_audio=False)


def _check_partition(corpus, folds):
    """Every utterance in exactly one test set; train is the rest of each fold."""
    tests = torch.cat([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(len(corpus)))
    for fold in folds:
        both = set(fold.train.tolist()) | set(fold.test.tolist())
        assert len(both) == len(corpus) == fold.train.numel() + fold.test.numel()


def _check_speaker_independent(corpus, folds):
    for fold in folds:
        train = {corpus[i].speaker for i in fold.train.tolist()}
        test = {corpus[i].speaker for i in fold.test.tolist()}
        assert not train & test, f"{fold}: speakers on both sides: {sorted(train & test)}"
        assert fold.speaker_independent and "speaker-independent" in str(fold)


def test_loso_emodb(emodb):
    folds = splits(emodb)  # loso is the default
    assert len(folds) == 10
    assert [f.test_groups for f in folds] == [(s,) for s in emodb.speakers]
    assert [f.test.numel() for f in folds] == list(emodb.speaker_counts().values())
    _check_partition(emodb, folds)
    _check_speaker_independent(emodb, folds)


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_speaker_kfold_balanced(emodb, k):
    folds = splits(emodb, "speaker_kfold", k=k, seed=1)
    assert len(folds) == k
    _check_partition(emodb, folds)
    _check_speaker_independent(emodb, folds)
    sizes = [f.test.numel() for f in folds]
    # Greedy largest-first: folds differ by at most the largest speaker's count.
    assert max(sizes) - min(sizes) <= max(emodb.speaker_counts().values()), sizes
    if k == 5:
        assert max(sizes) - min(sizes) <= 10, sizes


def test_speaker_kfold_seed_reproducible(emodb):
    first = [f.test_groups for f in splits(emodb, "speaker_kfold", k=3, seed=4)]
    assert first == [f.test_groups for f in splits(emodb, "speaker_kfold", k=3, seed=4)]


def test_session_iemocap(tmp_path):
    corpus = ef.data.load_corpus(
        "iemocap", fx.iemocap(tmp_path / "iemocap"), label_set="full", load_audio=False
    )
    folds = splits(corpus, "session")
    assert [f.test_groups for f in folds] == [("Session1",), ("Session2",)]
    _check_partition(corpus, folds)
    _check_speaker_independent(corpus, folds)
    for fold in folds:
        sessions = {corpus[i].metadata["session"] for i in fold.test.tolist()}
        assert sessions == {int(fold.test_groups[0][-1])}


def test_random_is_stratified_and_labelled_speaker_dependent(emodb):
    folds = splits(emodb, "random", k=5, seed=0)
    _check_partition(emodb, folds)
    assert all(not f.speaker_independent and "speaker-DEPENDENT" in str(f) for f in folds)
    totals = emodb.label_counts()
    for fold in folds:
        counts = Counter(emodb[i].label for i in fold.test.tolist())
        for label, total in totals.items():
            assert abs(counts[label] - total / 5) <= 1, (label, counts[label], total)
    sizes = [f.test.numel() for f in folds]
    assert max(sizes) - min(sizes) <= 1
    other_seed = splits(emodb, "random", k=5, seed=1)
    assert not torch.equal(folds[0].test, other_seed[0].test)


def test_bad_protocols(emodb, tmp_path):
    with pytest.raises(ValueError, match=r"protocol='lopo': expected one of loso, speaker_kfold"):
        splits(emodb, "lopo")
    with pytest.raises(ValueError, match=r"protocol='session' needs session metadata"):
        splits(emodb, "session")
    with pytest.raises(ValueError, match=r"k=11: speaker_kfold needs at least k speakers"):
        splits(emodb, "speaker_kfold", k=11)
    with pytest.raises(ValueError, match=r"k=1: expected an integer >= 2"):
        splits(emodb, "random", k=1)
    root = tmp_path / "mine"
    for label in ("a", "b"):
        fx.tone(root / label / "x.wav", 16000)
    anonymous = ef.data.load_corpus("folder", root, load_audio=False)
    with pytest.raises(ValueError, match=r"2 utterances have no speaker id"):
        splits(anonymous, "loso")
    assert len(splits(anonymous, "random", k=2)) == 2
    one_speaker = ef.data.load_corpus("folder", root, load_audio=False, speaker_pattern="x")
    with pytest.raises(ValueError, match=r"protocol='loso' needs at least 2 groups"):
        splits(one_speaker, "loso")
