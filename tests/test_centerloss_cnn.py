"""The center-loss CNN with reconstruction, the CenterLoss module and the model registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from ef_testing import DEVICES, emodb_files, load_wav

from emohrnet_fast import models
from emohrnet_fast.features import FrontEnd
from emohrnet_fast.losses import CenterLoss

CNN_PRESETS = ["centerloss_cnn_spec", "centerloss_cnn_mfcc"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", CNN_PRESETS)
@pytest.mark.parametrize("frames", [16, 17, 100, 401])
def test_shapes_for_odd_frame_counts(device, name, frames):
    model = models.create(name, num_classes=7).to(device).eval()
    bins = model.default_frontend.n_features
    features = torch.randn(2, bins, frames, device=device)
    out = model(features)
    assert out.logits.shape == (2, 7) and out.embedding.shape == (2, 128)
    assert out.reconstruction.shape == (2, 1, bins, frames)  # the decoder restores odd sizes
    torch.testing.assert_close(model(features.unsqueeze(1)).logits, out.logits)


def test_parameter_counts_are_compact():
    for name in CNN_PRESETS:
        model = models.create(name, num_classes=4)
        count = sum(p.numel() for p in model.parameters())
        assert count == 364_933, (name, count)  # stated in README.md; well under 1 M
    no_decoder = models.create("centerloss_cnn_spec", num_classes=4, reconstruction=False)
    assert no_decoder(torch.randn(1, 257, 40)).reconstruction is None
    assert sum(p.numel() for p in no_decoder.parameters()) == 257_636


def test_registry_errors():
    assert set(CNN_PRESETS) <= set(models.list_models())
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; available: "):
        models.create("resnet", num_classes=4)
    with pytest.raises(ValueError, match=r"num_classes=1: expected an integer >= 2"):
        models.create("centerloss_cnn_spec", num_classes=1)
    with pytest.raises(TypeError, match=r"has no config field\(s\) \['chanels'\]"):
        models.create("centerloss_cnn_spec", num_classes=4, chanels=(8,))


def test_bad_input_is_rejected():
    model = models.create("centerloss_cnn_mfcc", num_classes=4)
    with pytest.raises(ValueError, match=r"expected features \(B, F, T\) or \(B, 1, F, T\), got"):
        model(torch.randn(40, 100))
    with pytest.raises(ValueError, match=r"expected 1 input channel\(s\), got 3"):
        model(torch.randn(2, 3, 40, 100))
    with pytest.raises(ValueError, match=r"features of 8 bins x 100 frames are too small"):
        model(torch.randn(2, 8, 100))
    with pytest.raises(TypeError, match=r"expected floating-point features, got torch\.int64"):
        model(torch.zeros(2, 40, 100, dtype=torch.long))
    no_decoder = models.create("centerloss_cnn_mfcc", num_classes=4, reconstruction=False)
    feature_map, sizes = no_decoder.forward_features(torch.randn(2, 40, 100))
    with pytest.raises(RuntimeError, match=r"no decoder \(reconstruction=False\)"):
        no_decoder.reconstruct(feature_map, sizes)


def test_center_loss_moves_centers_to_class_means():
    torch.manual_seed(0)
    means = torch.tensor([[3.0, 0.0], [0.0, -3.0], [-2.0, 2.0]])
    labels = torch.randint(0, 3, (600,))
    embedding = means[labels] + 0.1 * torch.randn(600, 2)
    loss_fn = CenterLoss(num_classes=3, dim=2, alpha=0.5)
    first = loss_fn(embedding, labels).item()
    for _ in range(30):
        last = loss_fn(embedding, labels).item()
    torch.testing.assert_close(loss_fn.centers, means, atol=0.05, rtol=0)
    assert last < 0.05 * first
    loss_fn.eval()
    frozen = loss_fn.centers.clone()
    loss_fn(embedding, labels)
    torch.testing.assert_close(loss_fn.centers, frozen, rtol=0, atol=0)  # eval: no update


def test_center_loss_gradient_pulls_embeddings_and_spares_centers():
    loss_fn = CenterLoss(num_classes=2, dim=3)
    x = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    loss_fn.eval()(x, labels).backward()
    torch.testing.assert_close(x.grad, (x - loss_fn.centers[labels]).detach() / 4)
    assert not any(p.requires_grad for p in loss_fn.parameters())


def test_center_loss_bad_input():
    loss_fn = CenterLoss(num_classes=3, dim=4)
    with pytest.raises(ValueError, match=r"embedding: expected \(B, 4\), got \(2, 5\)"):
        loss_fn(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"labels: expected \(2,\) int64, got \(2,\) torch\.int32"):
        loss_fn(torch.randn(2, 4), torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(ValueError, match=r"CenterLoss num_classes=1: expected >= 2"):
        CenterLoss(num_classes=1, dim=4)
    with pytest.raises(ValueError, match=r"CenterLoss alpha=0\.0: expected a rate in \(0, 1\]"):
        CenterLoss(num_classes=3, dim=4, alpha=0.0)


@pytest.mark.parametrize("name", CNN_PRESETS)
def test_overfits_a_tiny_emodb_batch(name):
    """Eight real clips: the full loss (CE + center + reconstruction) drives training accuracy
    to 100 %."""
    files = emodb_files(8)
    clips = torch.stack([load_wav(path)[0] for path in files])
    letters = [path.stem[5] for path in files]
    classes = sorted(set(letters))
    labels = torch.tensor([classes.index(c) for c in letters])
    torch.manual_seed(0)
    model = models.create(name, num_classes=len(classes), dropout=0.0)
    # 20-ms hop, n_fft 256 and 64 frames (1.3 s): enough to separate 8 clips, fast on 2 cores.
    small = dict(sample_rate=22050, hop_length=441)
    if model.default_frontend.n_mels is None:
        small["n_fft"] = 256
    frontend = FrontEnd(model.default_frontend.replace(**small))
    features = frontend(clips)[..., 10:74]
    features = (features - features.mean()) / features.std()
    center_loss = CenterLoss(len(classes), model.config.embedding_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        out = model(features)
        loss = (
            F.cross_entropy(out.logits, labels)
            + 0.01 * center_loss(out.embedding, labels)
            + 0.1 * F.mse_loss(out.reconstruction, features.unsqueeze(1))
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(features).logits.argmax(1) == labels).float().mean().item()
    assert accuracy == 1.0, accuracy


@pytest.mark.slow
def test_torch_compile_fullgraph():
    model = models.create("centerloss_cnn_mfcc", num_classes=4).eval()
    x = torch.randn(2, 40, 101)
    compiled = torch.compile(model, fullgraph=True)
    for got, expected in zip(compiled(x), model(x), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
