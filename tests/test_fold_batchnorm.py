"""fold_batchnorm: the inference copy the Predictor runs has the same outputs, no BatchNorm
after a convolution, and leaves the model it copied alone."""

from __future__ import annotations

import itertools

import pytest
import torch
from ef_testing import DEVICES

from emohrnet_fast import models
from emohrnet_fast.models.base import fold_batchnorm


def trained_looking(name: str, device: str) -> torch.nn.Module:
    """A model whose BatchNorms hold statistics and affine weights far from their defaults,
    so a fold that used the wrong BN, or none, shows in the outputs."""
    torch.manual_seed(0)
    model = models.create(name, num_classes=5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    return model.to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", models.list_models())
def test_folded_copy_gives_the_same_outputs(device, name):
    model = trained_looking(name, device)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    features = torch.randn(2, 1, model.default_frontend.n_features, 77, device=device)
    with torch.no_grad():
        expected, got = model(features), folded(features)
    scale = expected.logits.abs().max()
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=1e-5 * float(scale))
    if expected.reconstruction is not None:
        torch.testing.assert_close(got.reconstruction, expected.reconstruction, rtol=0, atol=1e-4)
    # Every BN that follows a conv is gone; the CNN decoder's, after transposed convs, stay.
    follows_conv = [
        m
        for parent in folded.modules()
        for a, m in itertools.pairwise(parent.children())
        if isinstance(a, torch.nn.Conv2d) and isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert not follows_conv
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) < sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()
    )
    # The original is untouched and shares no tensor with the copy.
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ours = {p.data_ptr() for p in model.parameters()}
    assert not ours & {p.data_ptr() for p in folded.parameters()}
    assert model.training is False and not folded.training


def test_a_training_model_is_folded_with_its_running_statistics():
    model = trained_looking("emohrnet_compact", "cpu").train()
    folded = fold_batchnorm(model)
    features = torch.randn(2, 1, 128, 64)
    with torch.no_grad():
        expected = model.eval()(features).logits
        got = folded(features).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
