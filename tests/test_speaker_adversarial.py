"""Speaker-adversarial training: the gradient reversal, its ramp, resume, and bad settings."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from train_fixtures import TINY, assert_same_weights, interrupted_and_resumed, weights

import emohrnet_fast as ef
from emohrnet_fast import checkpoint

train_module = importlib.import_module("emohrnet_fast.train")


def test_reverse_gradient_is_identity_forward_and_negated_scaled_backward():
    x = torch.randn(5, 7, requires_grad=True)
    upstream = torch.randn(5, 7)
    y = train_module._ReverseGradient.apply(x, 0.3)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, -0.3 * upstream)


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
