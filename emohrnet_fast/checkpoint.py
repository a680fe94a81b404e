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
import warnings
from collections.abc import Mapping
from pathlib import Path
from pickle import UnpicklingError
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
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def emotion_model(model: nn.Module) -> EmotionModel:
    """:func:`unwrap`, checked to be one of our models (TypeError naming what it is)."""
    plain = unwrap(model)
    if not isinstance(plain, EmotionModel):
        raise TypeError(
            f"model: expected an EmotionModel (ef.models.create / ef.load_model), got "
            f"{type(plain).__name__}"
        )
    return plain


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
        if not isinstance(name, str):
            raise ValueError(f"expected a preset name, got {name!r}")
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


@dataclasses.dataclass(frozen=True)
class InitReport:
    """What :func:`init_weights` copied into a model."""

    source: str  # the file or checkpoint folder read
    loaded: tuple[str, ...]  # the model's state-dict entries taken from it
    fresh: tuple[str, ...]  # entries left as initialised (absent, other shape, other labels)
    refit: tuple[str, ...]  # input_norm's entries: training measures them on its own data
    unused: int  # entries of the source that nothing took

    def summary(self) -> str:
        """One line: counts, and the first entries left fresh."""
        line = (
            f"initialised {len(self.loaded)} of {len(self.loaded) + len(self.fresh)} tensors "
            f"from {self.source} ({self.unused} of its tensors unused)"
        )
        if self.fresh:
            shown = ", ".join(self.fresh[:4]) + (", ..." if len(self.fresh) > 4 else "")
            line += f"; fresh: {shown}"
        return line


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")  # common training-script dumps


def _source_state(source: str | os.PathLike) -> tuple[str, dict[str, torch.Tensor], dict | None]:
    """(description, state dict, checkpoint card or None) of a weights source."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    bundled = isinstance(source, str) and source == BUNDLED_NAME
    path = Path(source)
    if not bundled and not path.exists():
        raise FileNotFoundError(f"initial weights {str(path)!r} do not exist")
    if (
        bundled
        or path.is_dir()
        or (path.name == MODEL_FILE and (path.parent / META_FILE).is_file())
    ):
        folder = resolve(source)  # resolve() knows "default" and run folders
        return str(folder), load_file(str(folder / MODEL_FILE)), read_meta(folder)
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, SafetensorError, ValueError, EOFError, UnpicklingError) as error:
        raise CheckpointError(f"initial weights {str(path)!r}: unreadable ({error})") from error
    for key in _STATE_DICT_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not (
        isinstance(state, Mapping)
        and state
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(
            f"initial weights {str(path)!r}: expected a state dict (names -> tensors), "
            f"optionally under one of {list(_STATE_DICT_KEYS)}"
        )
    state = dict(state)
    for prefix in _WRAPPER_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return str(path), state, None


def _fit_tensor(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """``source`` as ``target``'s shape, or None. A stem convolution over three input
    channels (an RGB image model's, e.g. timm's HRNets) becomes one over our single channel
    by summing over them, as timm's ``in_chans=1`` does: the same response to a grey input."""
    if source.shape == target.shape:
        return source
    if (
        source.dim() == 4
        and target.dim() == 4
        and target.shape[1] == 1
        and source.shape[0] == target.shape[0]
        and source.shape[2:] == target.shape[2:]
        and source.is_floating_point()
    ):
        return source.sum(dim=1, keepdim=True)
    return None


def init_weights(
    model: EmotionModel,
    source: str | os.PathLike,
    labels: tuple[str, ...] | None = None,
) -> InitReport:
    """Copy the tensors of ``source`` into ``model`` where names and shapes match: the
    starting point for fine-tuning (``TrainConfig.init_from``).

    Args:
        model: the model to initialise (changed in place; its other tensors are untouched).
        source: a checkpoint training wrote (checkpoint folder, its ``model.safetensors``, or
            a run folder: its best epoch, else its last), ``"default"`` (the bundled model: a
            ``centerloss_cnn_mfcc`` trained on EmoDB), or a state-dict file: ``.safetensors``,
            or a ``torch.save`` file (``.pt``, ``.pth``, ``.bin``; loaded with
            ``weights_only=True``), the dict itself or under ``"state_dict"`` / ``"model"`` /
            ``"model_state_dict"``; ``module.`` / ``_orig_mod.`` prefixes are dropped. timm's
            ``hrnet_w18_small`` / ``hrnet_w18`` / ``hrnet_w32`` weights load by name into
            the EmoHRNet presets of the same widths; their RGB stem is summed to one channel.
        labels: the classes ``model`` will learn, in its output order. When ``source`` is one
            of our checkpoints, its classifier is copied only if it knows the same classes
            (rows reordered to ``labels``' order); otherwise it stays fresh. A bare state
            dict's classifier is copied whenever its shape fits.

    Returns:
        An :class:`InitReport`. ``input_norm`` is never copied: training measures it on its
        own data.

    Raises:
        FileNotFoundError: nothing at ``source``.
        CheckpointError: an unreadable file, something other than a state dict, or a source
            none of whose tensors fits ``model`` by name and shape.

    Warns:
        UserWarning: fewer than half of ``model``'s tensors came from ``source`` (another
        architecture?), or ``source`` is a checkpoint whose front-end differs from
        ``model``'s (the features it learnt on are not the ones it will see).
    """
    description, state, meta = _source_state(source)
    target_state = model.state_dict()
    copies: dict[str, torch.Tensor] = {}
    fresh: list[str] = []
    refit = [name for name in target_state if name.startswith("input_norm.")]
    # Our checkpoints name their classes: the classifier's rows follow them to ``labels``'
    # order, or stay fresh for other classes.
    classifier_rows: torch.Tensor | None = None
    other_classes = False
    if meta is not None and meta.get("labels") is not None and labels is not None:
        source_labels = list(meta["labels"])
        if sorted(source_labels) == sorted(labels) and len(set(labels)) == len(labels):
            classifier_rows = torch.tensor([source_labels.index(label) for label in labels])
        else:
            other_classes = True
    for name, target in target_state.items():
        if name in refit:
            continue
        value = state.get(name)
        if value is not None and name.startswith("classifier."):
            if other_classes:
                value = None
            elif classifier_rows is not None:  # a card whose labels miscount its rows: fresh
                value = value[classifier_rows] if len(value) == len(classifier_rows) else None
        fitted = None if value is None else _fit_tensor(value, target)
        if fitted is None:
            fresh.append(name)
        else:
            copies[name] = fitted
    # A classifier of the same class count alone fits by chance: that is no initialisation.
    if not any(
        target_state[name].is_floating_point() and not name.startswith("classifier.")
        for name in copies
    ):
        raise CheckpointError(
            f"initial weights {description}: none of its {len(state)} tensors fits "
            f"{type(model).__name__} by name and shape (weights of another architecture?)"
        )
    with torch.no_grad():
        for name, value in copies.items():
            target_state[name].copy_(value)
    report = InitReport(
        source=description,
        loaded=tuple(copies),
        fresh=tuple(fresh),
        refit=tuple(refit),
        unused=sum(name not in copies for name in state),
    )
    if len(copies) < len(fresh):
        warnings.warn(
            f"only {len(copies)} of {len(copies) + len(fresh)} tensors of "
            f"{type(model).__name__} came from {description}: is it the same architecture?",
            stacklevel=2,
        )
    if meta is not None and isinstance(meta.get("frontend"), dict):
        ours = _jsonable(dataclasses.asdict(model.default_frontend))
        changed = [key for key in ours if meta["frontend"].get(key, ours[key]) != ours[key]]
        if changed:
            warnings.warn(
                f"{description} learnt on other features ("
                + ", ".join(
                    f"{key}: {meta['frontend'][key]!r}, now {ours[key]!r}" for key in changed
                )
                + ")",
                stacklevel=2,
            )
    return report


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
