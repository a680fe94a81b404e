"""Checkpoints: weights as safetensors, a JSON card, and the state needed to resume.

A checkpoint is a folder::

    model.safetensors   the model's state dict (weights, BatchNorm statistics, input_norm)
    checkpoint.json     model name and full config, labels, front-end, metrics, versions
    train_state.pt      optimizer, center-loss centers, step counter (training checkpoints)

It is written into a temporary folder beside its destination and renamed into place, so a
reader (or a run killed with ``kill -9``) only ever sees complete checkpoints. A training run
folder holds ``checkpoints/epoch-NNNN/`` (the last epoch and the best one are kept),
``train_config.json`` and ``history.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emohrnet_fast._files import shareable
from emohrnet_fast.models.base import EmotionModel
from emohrnet_fast.models.registry import create, model_config, typed_fields

FORMAT = 1  # bump when the folder's content changes incompatibly
MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
STATE_FILE = "train_state.pt"
CHECKPOINTS = "checkpoints"
# The bundled model: ``load_model("default")`` (a checkpoint folder shipped in the wheel).
BUNDLED_NAME = "default"
BUNDLED_DIR = Path(__file__).resolve().parent / "assets" / "default"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or does not fit what it is loaded into."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_card(model: EmotionModel, name: str) -> dict[str, Any]:
    """What rebuilding ``model`` needs: preset name, full config, labels, class count."""
    return {
        "format": FORMAT,
        "model": name,
        "model_config": _jsonable(dataclasses.asdict(model.config)),
        "num_classes": model.num_classes,
        "labels": list(model.labels) if model.labels is not None else None,
        "temperature": model.temperature,
        "speaker_norm": model.speaker_norm,
        "frontend": _jsonable(dataclasses.asdict(model.default_frontend)),
    }


def save(
    directory: str | os.PathLike,
    model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (temp folder + rename); returns its path.
    ``extra_files`` (name -> text, e.g. a model card) are written into it too.

    An existing folder of the same name is replaced only once the new one is complete.

    Raises:
        OSError: the disk is full or not writable; nothing half-written is left behind and
            every existing checkpoint is untouched.
    """
    from safetensors.torch import save_file

    from emohrnet_fast import __version__

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
        save_file(state, str(temp / MODEL_FILE), metadata={"format": str(FORMAT)})
        card = {**meta, "library_version": __version__, "torch_version": torch.__version__}
        (temp / META_FILE).write_text(json.dumps(_jsonable(card), indent=2, allow_nan=True))
        if train_state is not None:
            torch.save(train_state, temp / STATE_FILE)
        for file_name, text in (extra_files or {}).items():
            (temp / file_name).write_text(text)
        for file in temp.iterdir():
            shareable(file)
            _fsync(file)
        shareable(temp, directory=True)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
            os.rename(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(temp, target)
        _fsync(target.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """``checkpoint.json`` of a complete checkpoint folder."""
    folder = Path(directory)
    meta_file, model_file = folder / META_FILE, folder / MODEL_FILE
    if not meta_file.is_file() or not model_file.is_file():
        raise CheckpointError(
            f"{folder}: not a checkpoint (expected {MODEL_FILE} and {META_FILE} in it)"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{meta_file}: unreadable ({error})") from error
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{folder}: checkpoint format {meta.get('format')!r}, this version reads {FORMAT}"
        )
    return meta


def epoch_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Complete epoch checkpoints of a run folder, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob("epoch-*")
        if p.is_dir() and (p / META_FILE).is_file() and (p / MODEL_FILE).is_file()
    )


def remove_partial(run_dir: str | os.PathLike) -> None:
    """Clear what a process killed inside :func:`save` left in ``run_dir``'s checkpoints: its
    temporary folders are deleted, and a complete checkpoint moved aside to be replaced
    (``.NAME.old``) goes back to ``NAME`` when the new one never arrived. Only call it when no
    other process is writing checkpoints there."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return
    for partial in folder.glob(".*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)
    for moved in folder.glob(".*.old"):
        original = folder / moved.name[1 : -len(".old")]
        if original.exists():
            shutil.rmtree(moved, ignore_errors=True)
        else:  # killed between save's two renames: the moved one is the complete one
            os.rename(moved, original)


def resolve(path: str | os.PathLike) -> Path:
    """The checkpoint folder meant by ``path``: a checkpoint folder, its ``model.safetensors``,
    or a run folder (its best epoch if it had validation, else its last). The string
    ``"default"`` means the bundled model (``emohrnet_fast/assets/default/``); a folder of
    that name in the working directory is ``"./default"`` or ``Path("default")``.

    Raises:
        FileNotFoundError: ``path`` does not exist, or ``"default"`` in an installation
            without a bundled model.
        CheckpointError: ``path`` holds no checkpoint.
    """
    if isinstance(path, str) and path == BUNDLED_NAME:
        if not (BUNDLED_DIR / META_FILE).is_file():
            raise FileNotFoundError(
                f"no bundled model in this installation ({BUNDLED_DIR} holds none); pass a "
                "checkpoint path (a checkpoint folder, its model.safetensors or a run folder)"
            )
        return BUNDLED_DIR
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file():
        path = path.parent
    if (path / META_FILE).is_file():
        return path
    epochs = epoch_dirs(path)
    if not epochs:
        raise CheckpointError(
            f"{path}: neither a checkpoint folder nor a training run with a checkpoint"
        )
    best = read_meta(epochs[-1]).get("best_epoch")
    if best is not None:
        candidate = path / CHECKPOINTS / f"epoch-{best:04d}"
        if candidate in epochs:
            return candidate
    return epochs[-1]


def build_model(meta: dict[str, Any]) -> EmotionModel:
    """An untrained model with the architecture, labels and front-end a card describes."""
    name = meta.get("model")
    try:
        model_config(name)
    except ValueError as error:
        raise CheckpointError(f"checkpoint model: {error}") from error
    try:
        fields = typed_fields(name, meta["model_config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint model config: {error}") from error
    model = create(name, int(meta["num_classes"]), **fields)
    labels = meta.get("labels")
    model.labels = tuple(labels) if labels is not None else None
    temperature = meta.get("temperature", 1.0)  # absent: written before calibration existed
    usable = isinstance(temperature, int | float) and math.isfinite(temperature)
    if not usable or temperature <= 0:
        raise CheckpointError(f"checkpoint temperature={temperature!r}: expected a number > 0")
    model.temperature = float(temperature)
    speaker_norm = meta.get("speaker_norm", False)  # absent: written before it existed
    if not isinstance(speaker_norm, bool):
        raise CheckpointError(f"checkpoint speaker_norm={speaker_norm!r}: expected true or false")
    model.speaker_norm = speaker_norm
    return model


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> EmotionModel:
    """A trained model from any checkpoint training wrote, in eval mode on ``device``.

    Args:
        path: a checkpoint folder, its ``model.safetensors``, a training run folder
            (its best epoch when it had a validation set, else its last), or ``"default"``:
            the bundled model (``FileNotFoundError`` in an installation without one).
        device: where the weights go (the CPU unless asked; :class:`~emohrnet_fast.Predictor`
            and :func:`~emohrnet_fast.predict` default to CUDA when usable).

    Returns:
        The model, with ``labels`` (class names) and ``default_frontend`` (the features it
        was trained on) set.

    Raises:
        FileNotFoundError: nothing at ``path`` (or no bundled model in this installation).
        CheckpointError: a folder that is not a checkpoint, or one this version cannot read
            (the message says which file or field).
    """
    from safetensors.torch import load_file

    folder = resolve(path)
    meta = read_meta(folder)
    model = build_model(meta)
    state = load_file(str(folder / MODEL_FILE), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}: weights do not fit model {meta['model']!r} (missing: {missing[:5]}, "
            f"unexpected: {unexpected[:5]})"
        )
    return model.to(device).eval()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
