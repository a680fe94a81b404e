"""Ship one fold's model of a cross-validation study: calibrated, compact, with a model card.

A fold's model never saw its test speakers, so the study's figures are honest figures for it,
and the study's other folds give it an honest temperature: fitted on their test speakers,
never on this model's training or test speakers (see :mod:`emohrnet_fast.calibration`).
:func:`export_fold` writes that model as a checkpoint folder (weights in 16-bit by default),
with the figures in ``checkpoint.json``'s ``card`` and a readable ``MODEL_CARD.md``. The
bundled default model (``emohrnet_fast/assets/default``) is made this way.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shlex
from pathlib import Path
from typing import Any

import torch

from emohrnet_fast import checkpoint, models
from emohrnet_fast.cli import (
    FRONTEND_FLAGS,
    SPEC_AUGMENT_FLAGS,
    TRAIN_SWITCHES,
    TRAIN_VALUE_FLAGS,
)
from emohrnet_fast.config import FrontEndConfig, SpecAugmentConfig, TrainConfig

CARD_FILE = "MODEL_CARD.md"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Where the study ran, not what it trained: left out of the reproducing command.
_MACHINE_FIELDS = ("device", "compile", "compile_mode")


def export_fold(
    study: str | os.PathLike,
    fold: int,
    out_dir: str | os.PathLike,
    *,
    dtype: str = "float16",
    name: str | None = None,
    licence_note: str | None = None,
) -> Path:
    """Write fold ``fold``'s final model of a finished study as a calibrated checkpoint.

    Args:
        study: the ``out_dir`` of a finished :func:`emohrnet_fast.cross_validate` run (it
            needs ``summary.json`` with cross-fitted calibration: at least two folds).
        fold: which fold's model (its test speakers are the ones it never heard).
        out_dir: the checkpoint folder to write (replaced atomically if it exists);
            ``emohrnet_fast.load_model(out_dir)`` reads it.
        dtype: ``"float16"`` (default), ``"bfloat16"`` or ``"float32"``: how the weights are
            stored; loading casts them back to float32.
        name: the card's model name (default ``"<corpus>-<model>-fold<k>"``).
        licence_note: a line on the training corpus's terms for the card (default: a
            reminder to check them).

    Returns:
        ``out_dir``, holding ``model.safetensors``, ``checkpoint.json`` and ``MODEL_CARD.md``.

    Raises:
        FileNotFoundError: ``study`` is not a finished study folder.
        ValueError: a fold the study did not run, a study without calibration, a bad dtype.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    folder = Path(study)
    summary_file = folder / "summary.json"
    if not summary_file.is_file():
        raise FileNotFoundError(
            f"{folder}: no summary.json, not a finished cross-validation study (run "
            "`emohrnet-fast cv ... --out` to the end first)"
        )
    summary = json.loads(summary_file.read_text())
    if "ensemble_of" in summary:
        raise ValueError(
            f"{folder} is an ensemble of studies, which holds no models: export a fold of "
            "one of its members"
        )
    folds = [entry["fold"] for entry in summary["per_fold"]]
    if fold not in folds:
        raise ValueError(f"fold={fold!r}: the study in {folder} ran folds {folds}")
    if "calibration" not in summary:
        raise ValueError(
            f"{folder}: the study has no calibration (the temperature is cross-fitted on the "
            "other folds, so it needs two finished folds or more, with the same labels): run "
            "more folds into the same --out (e.g. without --folds) and export again"
        )
    position = folds.index(fold)
    per_fold = summary["per_fold"][position]
    calibration = summary["calibration"]["per_fold"][position]

    source = checkpoint.resolve(folder / f"fold-{fold:02d}" / "run")
    meta = checkpoint.read_meta(source)
    model = checkpoint.load_model(source)
    model.temperature = float(calibration["temperature"])
    stored = copy.deepcopy(model).to(DTYPES[dtype])
    config = TrainConfig.from_dict(summary["train_config"])
    card = {
        "name": name or f"{summary['corpus']}-{meta['model']}-fold{fold}",
        "model": meta["model"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_dtype": dtype,
        "training_corpus": _training_corpus(summary, per_fold),
        "protocol": summary["protocol"],
        "speaker_independent": per_fold.get("speaker_independent", True),
        "cv_ua": summary["mean"]["ua"],
        "cv_wa": summary["mean"]["wa"],
        "cv_macro_f1": summary["mean"]["macro_f1"],
        "cv_std": summary["std"],
        "cv_pooled": summary["pooled"],
        "folds": folds,
        "held_out_fold": {k: per_fold[k] for k in ("fold", "test_groups", "wa", "ua", "macro_f1")},
        "temperature": model.temperature,
        "calibration_held_out": calibration,
        "calibration_pooled": summary["calibration"]["pooled"],
        "commands": [_cv_command(summary, config), _export_command(folder, fold, dtype)],
        "source": str(source),
        "licence_note": licence_note,
    }
    weight_bytes = sum(t.numel() * t.element_size() for t in stored.state_dict().values())
    text = _markdown(card, meta, model.default_frontend, weight_bytes)
    meta_out = {**checkpoint.model_card(model, meta["model"]), "card": card}
    return checkpoint.save(out_dir, stored, meta_out, extra_files={CARD_FILE: text})


def _training_corpus(summary: dict[str, Any], per_fold: dict[str, Any]) -> str:
    held = ", ".join(per_fold["test_groups"])
    kind = "speaker" if summary["protocol"] in ("loso", "speaker_kfold") else "group"
    return (
        f"{summary['corpus']} ({summary['utterances']} utterances), all but {kind} {held} "
        f"({summary['protocol']} fold {per_fold['fold']}'s test set, held out)"
    )


def _cv_command(summary: dict[str, Any], config: TrainConfig) -> str:
    """The ``cv`` command line that reproduces the study (flags for the non-default fields;
    fields without a flag are listed after it)."""
    defaults = TrainConfig(model=config.model)
    parts = [
        "emohrnet-fast cv",
        f"--corpus {summary['corpus']}",
        f"--root {summary['root']}",
        f"--model {config.model}",
        f"--protocol {summary['protocol']}",
    ]
    if summary["protocol"] in ("speaker_kfold", "random"):
        parts.append(f"--k {summary['k']}")
        if summary.get("split_seed", 0):
            parts.append(f"--split-seed {summary['split_seed']}")
    parts += [f"--teacher {teacher}" for teacher in summary.get("teachers", ())]
    for field, flag in TRAIN_VALUE_FLAGS.items():
        value = getattr(config, field)
        if field not in ("model", *_MACHINE_FIELDS) and (
            field == "epochs" or value != getattr(defaults, field)
        ):
            parts.append(f"{flag} {shlex.quote(str(value))}")  # --init takes a path
    for field, flag in TRAIN_SWITCHES.items():
        if field not in _MACHINE_FIELDS and getattr(config, field):
            parts.append(flag)
    flagged = {"model", "spec_augment", "frontend", *TRAIN_VALUE_FLAGS, *TRAIN_SWITCHES}
    others = [
        f"{f.name}={getattr(config, f.name)!r}"
        for f in dataclasses.fields(TrainConfig)
        if f.name not in flagged and getattr(config, f.name) != getattr(defaults, f.name)
    ]
    augment = config.spec_augment
    if augment is None:
        parts.append("--no-augment")
    elif isinstance(augment, SpecAugmentConfig):
        flagged_augment = {field: getattr(augment, field) for field in SPEC_AUGMENT_FLAGS}
        parts += [f"{SPEC_AUGMENT_FLAGS[k]} {v}" for k, v in flagged_augment.items()]
        # mask_value and p have no flag: named after the command when not the defaults.
        if augment != SpecAugmentConfig(**flagged_augment):
            others.append(f"spec_augment={augment!r}")
    if config.frontend is not None:
        preset = models.model_config(config.model).frontend
        changed = {
            f.name: getattr(config.frontend, f.name)
            for f in dataclasses.fields(FrontEndConfig)
            if getattr(config.frontend, f.name) != getattr(preset, f.name)
        }
        # Flags take integers: a change to None (e.g. no Mel filterbank) is named instead.
        if all(field in FRONTEND_FLAGS and value is not None for field, value in changed.items()):
            parts += [f"{FRONTEND_FLAGS[field]} {value}" for field, value in changed.items()]
        else:
            others.append(f"frontend={config.frontend!r}")
    command = " ".join(parts)
    return command + (f"  (and TrainConfig {', '.join(others)})" if others else "")


def _export_command(study: Path, fold: int, dtype: str) -> str:
    return f"emohrnet-fast export {study.name} --fold {fold} --out DIR --dtype {dtype}"


def _frontend_text(frontend: FrontEndConfig) -> str:
    changed = [
        f"{f.name}={getattr(frontend, f.name)!r}"
        for f in dataclasses.fields(FrontEndConfig)
        if getattr(frontend, f.name) != f.default
    ]
    return f"FrontEndConfig({', '.join(changed)})"


def _markdown(
    card: dict[str, Any], meta: dict[str, Any], frontend: FrontEndConfig, size: int
) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    std, pooled, held = card["cv_std"], card["cv_pooled"], card["held_out_fold"]
    cal, cal_pooled = card["calibration_held_out"], card["calibration_pooled"]
    kind = "speaker-independent" if card["speaker_independent"] else "speaker-DEPENDENT"
    licence = card["licence_note"] or (
        "check the training corpus's terms before using or sharing this model."
    )
    bullets = [
        f"**Architecture**: `{card['model']}`, {card['parameters'] / 1e6:.2f} M parameters, "
        f"weights stored as {card['weights_dtype']} ({size / 1e6:.1f} MB; loaded as float32). "
        f"Input: `{_frontend_text(frontend)}` features at {frontend.sample_rate} Hz. "
        f"{meta['num_classes']} classes: {', '.join(meta['labels'])}.",
        f"**Training data**: {card['training_corpus']}.",
        f"**Accuracy** ({card['protocol']}, {kind}, {len(card['folds'])} folds, one model per "
        f"fold, last epoch): UA {pct(card['cv_ua'])} ± {pct(std['ua'])}, WA "
        f"{pct(card['cv_wa'])} ± {pct(std['wa'])}, macro-F1 {pct(card['cv_macro_f1'])} ± "
        f"{pct(std['macro_f1'])} (mean ± std over folds); pooled over the folds' test sets: "
        f"UA {pct(pooled['ua'])}, WA {pct(pooled['wa'])}. This model on its own held-out "
        f"{', '.join(held['test_groups'])}: UA {pct(held['ua'])}, WA {pct(held['wa'])}.",
        f"**Scores** are calibrated by temperature scaling: T = {card['temperature']:.3f}, "
        "fitted on the other folds' test utterances (never on this model's training or test "
        f"data). On its held-out test set ({cal['utterances']} utterances) the expected "
        f"calibration error goes {pct(cal['ece_before'])} -> {pct(cal['ece_after'])} (NLL "
        f"{cal['nll_before']:.3f} -> {cal['nll_after']:.3f}); over the whole study, each fold "
        f"with its own cross-fitted temperature: ECE {pct(cal_pooled['ece_before'])} -> "
        f"{pct(cal_pooled['ece_after'])} (15 equal-width bins).",
        f"**Made with**: `{card['commands'][0]}`, then `{card['commands'][1]}`.",
        f"**Licence note**: {licence}",
    ]
    return f"# Model card: {card['name']}\n\n" + "".join(f"- {b}\n" for b in bullets)


__all__ = ["CARD_FILE", "DTYPES", "export_fold"]
