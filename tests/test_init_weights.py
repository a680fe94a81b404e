"""Fine-tuning from other weights: checkpoint.init_weights and TrainConfig.init_from."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch
from ef_testing import timm_reference
from safetensors.torch import save_file
from train_fixtures import TINY, assert_same_weights, interrupted_and_resumed, weights

import emohrnet_fast as ef
from emohrnet_fast import TrainConfig, checkpoint, cli, models
from emohrnet_fast.checkpoint import CheckpointError, init_weights

train_module = importlib.import_module("emohrnet_fast.train")  # ef.train is the function


@pytest.fixture(scope="module")
def source_run(corpus, tmp_path_factory):
    """TINY trained for one epoch: the weights the tests start from."""
    out = tmp_path_factory.mktemp("source")
    ef.train(TINY.replace(epochs=1), corpus, out_dir=out, progress=False, quiet=True)
    return out


def fresh_model(num_classes: int = 3, **overrides):
    return models.create(TINY.model, num_classes, **{**TINY.model_overrides, **overrides})


def source_weights(run) -> dict[str, torch.Tensor]:
    return ef.load_model(run).state_dict()


def test_a_run_gives_every_tensor_but_input_norm(source_run, corpus):
    model = fresh_model()
    untouched = weights(model)
    report = init_weights(model, source_run, corpus.labels)
    expected = source_weights(source_run)
    refit = {name for name in expected if name.startswith("input_norm.")}
    assert refit and set(report.refit) == refit
    assert report.fresh == () and report.unused == len(refit)
    assert set(report.loaded) == expected.keys() - refit
    now = weights(model)
    for name in expected:
        wanted = untouched[name] if name in refit else expected[name]
        torch.testing.assert_close(now[name], wanted, rtol=0, atol=0, msg=name)
    assert (
        "initialised" in report.summary() and str(checkpoint.resolve(source_run)) in report.source
    )


def test_classifier_rows_follow_the_labels(source_run, corpus):
    expected = source_weights(source_run)["classifier.weight"]
    labels = corpus.labels
    reordered = (labels[2], labels[0], labels[1])
    model = fresh_model()
    init_weights(model, source_run, reordered)
    for row, label in enumerate(reordered):
        torch.testing.assert_close(model.classifier.weight[row], expected[labels.index(label)])

    other = (labels[0], labels[1], "happy")  # same count, another class: stays fresh
    model = fresh_model()
    before = model.classifier.weight.detach().clone()
    report = init_weights(model, source_run, other)
    assert set(report.fresh) == {"classifier.weight", "classifier.bias"}
    torch.testing.assert_close(model.classifier.weight, before, rtol=0, atol=0)

    report = init_weights(fresh_model(num_classes=2), source_run, labels[:2])
    assert set(report.fresh) == {"classifier.weight", "classifier.bias"}


def test_state_dict_files(source_run, tmp_path):
    expected = source_weights(source_run)
    wrapped = {f"module.{name}": value for name, value in expected.items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "weights.pt")
    save_file(expected, str(tmp_path / "weights.safetensors"))
    for file in ("weights.pt", "weights.safetensors"):
        model = fresh_model()
        report = init_weights(model, tmp_path / file)  # no labels: a fitting classifier is taken
        assert report.fresh == () and report.source == str(tmp_path / file)
        torch.testing.assert_close(model.classifier.weight, expected["classifier.weight"])


def test_an_rgb_stem_is_summed_to_one_channel(source_run, corpus, tmp_path):
    """An image model's 3-channel stem, summed, answers a grey input as the original does."""
    reference = ef.load_model(source_run)
    state = source_weights(source_run)
    stems = [n for n, v in state.items() if v.dim() == 4 and v.shape[1] == 1]
    assert stems
    for name in stems:
        w = state[name]
        parts = torch.randn(w.shape[0], 2, *w.shape[2:])
        state[name] = torch.cat([w - parts.sum(1, keepdim=True), parts], dim=1)
    torch.save(state, tmp_path / "rgb.pt")
    model = fresh_model()
    report = init_weights(model, tmp_path / "rgb.pt", corpus.labels)
    assert not report.fresh
    model.input_norm.load_state_dict(reference.input_norm.state_dict())
    x = torch.randn(2, 1, 40, 51)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x).logits, reference(x).logits)


def test_the_bundled_model_is_a_starting_point():
    bundled = ef.load_model("default")
    labels = bundled.labels[::-1]
    model = models.create("centerloss_cnn_mfcc", len(labels))
    report = init_weights(model, "default", labels)
    assert not report.fresh and report.source == str(checkpoint.BUNDLED_DIR)
    torch.testing.assert_close(model.classifier.bias, bundled.classifier.bias.flip(0))


def test_bad_sources(source_run, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"initial weights .*nothing-here"):
        init_weights(fresh_model(), tmp_path / "nothing-here.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*unreadable"):
        init_weights(fresh_model(), tmp_path / "garbage.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        init_weights(fresh_model(), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match=r"none of its .* fits EmoHRNet"):
        init_weights(models.create("emohrnet_compact", 3), source_run)
    half = dict(list(source_weights(source_run).items())[:3])
    torch.save(half, tmp_path / "half.pt")
    with pytest.warns(UserWarning, match="only .* tensors of CenterLossCNN came from"):
        init_weights(fresh_model(), tmp_path / "half.pt")


def test_other_features_warn(source_run):
    frontend = fresh_model().default_frontend.replace(f_min=60.0)
    with pytest.warns(UserWarning, match="learnt on other features .*f_min"):
        init_weights(fresh_model(frontend=frontend), source_run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_weights(fresh_model(), source_run)


def test_training_starts_from_the_weights(source_run, corpus, monkeypatch):
    seen = {}

    def first_epoch(self, epoch, progress):
        seen.update(weights(self.model))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module._Trainer, "_train_epoch", first_epoch)
    with pytest.raises(KeyboardInterrupt):
        ef.train(TINY.replace(init_from=str(source_run)), corpus, progress=False, quiet=True)
    expected = source_weights(source_run)
    for name, value in expected.items():
        if not name.startswith("input_norm."):
            torch.testing.assert_close(seen[name], value, rtol=0, atol=0, msg=name)


def test_fine_tuning_runs_reports_and_resumes_without_the_source(
    source_run, corpus, tmp_path, monkeypatch, capsys
):
    config = TINY.replace(init_from=source_run)  # a Path: kept as text
    assert config.init_from == str(source_run)
    full = ef.train(config, corpus, out_dir=tmp_path / "full", progress=False)
    assert full.init_report is not None and not full.init_report.fresh
    assert "initialised" in capsys.readouterr().err
    # The resume restores the checkpoint; only the interrupted first call reads the weights.
    calls = []

    def counted(*args, **kwargs):
        calls.append(args)
        return original_init(*args, **kwargs)

    original_init = checkpoint.init_weights
    monkeypatch.setattr(checkpoint, "init_weights", counted)
    resumed = interrupted_and_resumed(config, corpus, tmp_path / "cut", monkeypatch)
    assert len(calls) == 1
    assert resumed.init_report is None and resumed.resumed_from == 2
    assert_same_weights(weights(full.model), weights(resumed.model))
    with pytest.raises(ValueError, match="init_from: saved"):
        ef.train(TINY, corpus, out_dir=tmp_path / "cut", resume=True, quiet=True)


@pytest.mark.parametrize("value", ["", 3])
def test_bad_init_from(value):
    with pytest.raises(ValueError, match=r"TrainConfig.init_from=.*: expected None or the path"):
        TrainConfig(init_from=value)


def test_cli_init_flag(tmp_path):
    args = cli._parser().parse_args(
        ["train", "--corpus", "emodb", "--root", "x", "--out", "o", "--init", "runs/pre"]
    )
    assert cli._train_config(args).init_from == "runs/pre"


def test_timm_imagenet_layout_loads_into_emohrnet(tmp_path):
    """timm's RGB hrnet_w18_small, saved as a state dict, initialises emohrnet_small: same
    pooled features on a grey input (timm: the GPU machine)."""
    timm = pytest.importorskip("timm")
    reference = timm_reference(timm, "hrnet_w18_small", in_chans=3)
    torch.save(reference.state_dict(), tmp_path / "hrnet_w18_small.pth")
    model = models.create("emohrnet_small", 7).eval()
    report = init_weights(model, tmp_path / "hrnet_w18_small.pth")
    assert {name.split(".")[0] for name in report.fresh} == {"hidden", "classifier"}
    x = torch.randn(2, 1, 128, 384)
    with torch.no_grad():
        grey = x.expand(-1, 3, -1, -1)
        expected = reference.forward_head(reference.forward_features(grey), pre_logits=True)
        torch.testing.assert_close(model.forward_features(x), expected, rtol=1e-4, atol=1e-4)
