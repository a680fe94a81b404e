"""Exporting a fold's model from a study (calibrated, 16-bit, model card), and the bundled model
that was made that way."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import torch
from train_fixtures import TINY, tiny_corpus

import emohrnet_fast as ef
from emohrnet_fast import checkpoint, models
from emohrnet_fast.cli import _parser, _train_config, main
from emohrnet_fast.export import CARD_FILE, DTYPES, _cv_command, export_fold

ONE_EPOCH = TINY.replace(epochs=1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    corpus = tiny_corpus(folder)
    result = ef.cross_validate(ONE_EPOCH, corpus, "loso", out_dir=folder / "study", quiet=True)
    return folder / "study", result, corpus


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_export_writes_a_calibrated_compact_checkpoint(study, tmp_path, dtype):
    folder, result, _ = study
    out = export_fold(folder, 2, tmp_path / "model", dtype=dtype)
    source = ef.load_model(folder / "fold-02" / "run")
    model = ef.load_model(out)
    assert model.temperature == pytest.approx(result.fold_calibration[2].temperature)
    assert model.labels == source.labels
    assert next(model.parameters()).dtype == torch.float32  # stored 16-bit, loaded float32
    stored = DTYPES[dtype]
    from safetensors.torch import load_file

    weights = load_file(str(out / checkpoint.MODEL_FILE))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {stored}
    features = torch.randn(3, 1, 40, 40)
    tolerance = {"float32": 1e-6, "float16": 2e-2, "bfloat16": 1e-1}[dtype]
    torch.testing.assert_close(
        model.classify(features), source.classify(features), atol=tolerance, rtol=tolerance
    )
    card = checkpoint.read_meta(out)["card"]
    fold = json.loads((folder / "summary.json").read_text())["per_fold"][2]
    assert card["held_out_fold"]["test_groups"] == fold["test_groups"]
    assert card["cv_ua"] == pytest.approx(result.mean["ua"])
    assert card["weights_dtype"] == dtype and card["protocol"] == "loso"
    text = (out / CARD_FILE).read_text()
    assert f"UA {100 * result.mean['ua']:.1f} %" in text
    assert f"T = {result.fold_calibration[2].temperature:.3f}" in text
    assert "emohrnet-fast cv --corpus emodb" in text and "--epochs 1" in text
    assert "(and TrainConfig" in text  # the tiny model's overrides have no CLI flag


@pytest.mark.parametrize(
    "config",
    [
        ef.TrainConfig(model="centerloss_cnn_mfcc", epochs=30),
        ef.TrainConfig(epochs=5, lr=3e-4, batch_size=16, seed=3, spec_augment=None),
        ef.TrainConfig(epochs=5, init_from="pretrained runs/iemocap small"),
        ef.TrainConfig(epochs=5, optimizer="adamw", weight_decay=0.01, precision="bf16"),
        ef.TrainConfig(
            model="centerloss_cnn_mfcc",
            epochs=2,
            spec_augment=ef.SpecAugmentConfig(freq_masks=0, time_masks=4),
        ),
        ef.TrainConfig(
            model="emohrnet_compact",
            epochs=30,
            label_smoothing=0.1,
            mixup=0.4,
            speed_perturb=0.1,
            ema_decay=0.99,
            balance_classes=True,
            speaker_norm=True,
            spec_augment=ef.SpecAugmentConfig(freq_masks=3, time_masks=3, time_width=0.15),
        ),
        ef.TrainConfig(epochs=2, spec_augment=ef.SpecAugmentConfig(freq_width=13, time_width=40)),
        ef.TrainConfig(epochs=2, frontend=ef.FrontEndConfig(n_mels=64)),
        ef.TrainConfig(
            model="centerloss_cnn_mfcc",
            epochs=2,
            frontend=models.model_config("centerloss_cnn_mfcc").frontend.replace(
                sample_rate=8000, n_mfcc=20
            ),
        ),
    ],
    ids=[
        "defaults",
        "no-augment",
        "fine-tuned",
        "adamw-bf16",
        "masks",
        "regularisers",
        "mask-widths",
        "mel-bands",
        "mfcc-8khz",
    ],
)
def test_card_command_reproduces_the_config(config):
    summary = {"corpus": "emodb", "root": "/data/emodb", "protocol": "loso"}
    command = _cv_command(summary, config)
    assert "(and TrainConfig" not in command  # every field here has a flag
    args = _parser().parse_args(shlex.split(command)[1:])
    assert _train_config(args) == config


def test_card_command_keeps_the_split_of_seeded_protocols():
    summary = {"corpus": "emodb", "root": "r", "protocol": "random", "k": 4, "split_seed": 3}
    args = _parser().parse_args(shlex.split(_cv_command(summary, ef.TrainConfig()))[1:])
    assert (args.protocol, args.k, args.split_seed) == ("random", 4, 3)
    loso = {**summary, "protocol": "loso"}
    assert "--split-seed" not in _cv_command(loso, ef.TrainConfig())


def test_card_command_names_front_end_changes_without_a_flag():
    linear = ef.FrontEndConfig(n_mels=None, n_fft=400)
    command = _cv_command(
        {"corpus": "emodb", "root": "r", "protocol": "loso"}, ef.TrainConfig(frontend=linear)
    )
    assert "--n-mels" not in command and f"(and TrainConfig frontend={linear!r})" in command
    # The preset's own front-end, given explicitly, needs no flag at all.
    preset = models.model_config("emohrnet_small").frontend
    assert "--n-mels" not in _cv_command(
        {"corpus": "emodb", "root": "r", "protocol": "loso"}, ef.TrainConfig(frontend=preset)
    )


def test_card_command_names_spec_augment_fields_without_a_flag():
    augment = ef.SpecAugmentConfig(freq_width=10, mask_value="mean")
    command = _cv_command(
        {"corpus": "emodb", "root": "r", "protocol": "loso"}, ef.TrainConfig(spec_augment=augment)
    )
    assert "--freq-masks 2 --freq-width 10 --time-masks 2 --time-width 0.1" in command
    assert f"(and TrainConfig spec_augment={augment!r})" in command


def test_export_cli_and_its_errors(study, tmp_path, capsys):
    folder, _, _ = study
    out = tmp_path / "model"
    assert main(["export", str(folder), "--fold", "0", "--out", str(out), "--name", "x"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")
    assert checkpoint.read_meta(out)["card"]["name"] == "x"
    assert main(["export", str(folder), "--fold", "0", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"replaced {out}")
    cases = [
        (["export", str(tmp_path / "nothing"), "--fold", "0"], "no summary.json"),
        (["export", str(folder), "--fold", "9"], r"fold=9: the study .* ran folds \[0, 1, 2, 3\]"),
    ]
    for argv, pattern in cases:
        assert main([*argv, "--out", str(tmp_path / "y")]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(pattern, err), err
    with pytest.raises(ValueError, match="dtype='int8'"):
        export_fold(folder, 0, tmp_path / "z", dtype="int8")


def test_a_study_without_calibration_cannot_be_exported(study, tmp_path):
    _, _, corpus = study
    ef.cross_validate(ONE_EPOCH, corpus, "loso", folds=[1], out_dir=tmp_path / "s", quiet=True)
    with pytest.raises(ValueError, match="has no calibration"):
        export_fold(tmp_path / "s", 1, tmp_path / "model")


def test_the_bundled_model_fits_the_package_budget():
    folder = checkpoint.BUNDLED_DIR
    if not (folder / checkpoint.META_FILE).is_file():
        pytest.skip("this installation bundles no model")
    assert (folder / checkpoint.MODEL_FILE).stat().st_size <= 10 * 2**20
    meta = checkpoint.read_meta(folder)
    assert meta["temperature"] > 0 and meta["card"]["cv_ua"] > 0.5
    assert (folder / CARD_FILE).is_file()
    model = ef.load_model("default")
    assert model.temperature == meta["temperature"]
