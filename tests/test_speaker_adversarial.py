"""Speaker-adversarial training: the confusion loss, its ramp, resume, and bad settings."""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from train_fixtures import TINY, assert_same_weights, interrupted_and_resumed, weights

import emohrnet_fast as ef
from emohrnet_fast import checkpoint

train_module = importlib.import_module("emohrnet_fast.train")


def test_confusion_trains_the_model_and_the_head_loss_only_the_head():
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 4)
    embedding = torch.randn(5, 6, requires_grad=True)
    speaker = torch.tensor([0, 1, 2, 3, 1])
    guess, confusion = train_module.speaker_confusion(head, embedding)
    head_loss = F.cross_entropy(guess, speaker)
    torch.testing.assert_close(head_loss, F.cross_entropy(head(embedding), speaker))
    head_loss.backward(retain_graph=True)
    assert embedding.grad is None and head.weight.grad.abs().sum() > 0
    head.zero_grad(set_to_none=True)
    confusion.backward()
    assert head.weight.grad is None and head.bias.grad is None
    assert embedding.grad.abs().sum() > 0
    # Cross-entropy against the uniform distribution: log K exactly when the guess is uniform,
    # more otherwise.
    assert confusion > math.log(4)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(0.3)
    _, uniform = train_module.speaker_confusion(head, embedding)
    torch.testing.assert_close(uniform, torch.tensor(math.log(4)))


def test_first_step_is_the_plain_one_and_later_steps_differ(corpus):
    """The ramp starts at 0 and the head's initialisation leaves the run's random draws alone,
    so one step lands on the plain run's weights; two epochs of steps do not."""
    one_step = TINY.replace(epochs=1, batch_size=len(corpus))
    plain = ef.train(one_step, corpus, progress=False, quiet=True)
    adversarial = ef.train(
        one_step.replace(speaker_adversarial=1.0), corpus, progress=False, quiet=True
    )
    assert_same_weights(weights(adversarial.model), weights(plain.model))
    longer = TINY.replace(epochs=2)
    plain = weights(ef.train(longer, corpus, progress=False, quiet=True).model)
    adversarial = weights(
        ef.train(longer.replace(speaker_adversarial=1.0), corpus, progress=False, quiet=True).model
    )
    assert plain.keys() == adversarial.keys()
    assert any(not torch.equal(plain[k], adversarial[k]) for k in plain)


def test_head_is_checkpointed_not_in_the_model_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    config = TINY.replace(epochs=4, speaker_adversarial=0.5)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False, quiet=True)
    last = checkpoint.epoch_dirs(tmp_path / "full")[-1]
    state = torch.load(last / checkpoint.STATE_FILE, weights_only=True)
    speakers = len(set(corpus.speakers))
    assert state["speaker_head"]["weight"].shape == (speakers, full.model.embedding_dim)
    assert not any("speaker" in key for key in full.model.state_dict())
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert_same_weights(weights(resumed.model), weights(full.model))


def test_bad_settings(corpus):
    with pytest.raises(ValueError, match=r"speaker_adversarial=-1: expected a weight in \[0, 10\]"):
        TINY.replace(speaker_adversarial=-1)
    with pytest.raises(ValueError, match="speaker_adversarial"):
        TINY.replace(speaker_adversarial=True)
    config = TINY.replace(speaker_adversarial=0.5)
    nameless = dataclasses.replace(
        corpus,
        utterances=tuple(dataclasses.replace(u, speaker=None) for u in corpus.utterances),
    )
    with pytest.raises(ValueError, match=r"speaker_adversarial=0\.5 needs every training utter"):
        ef.train(config, nameless, progress=False, quiet=True)
    first = corpus.utterances[0].speaker
    alone = corpus.subset([i for i, u in enumerate(corpus.utterances) if u.speaker == first])
    with pytest.raises(ValueError, match=r"needs at least two training speakers; .* has 1"):
        ef.train(config, alone, progress=False, quiet=True)
