"""Classification metrics for speech emotion recognition, and their reports.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean per-class
recall, the figure SER papers quote because the corpora are imbalanced. Classes absent from
the ground truth have no recall and are left out of UA and macro-F1 (and named in the report).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from emohrnet_fast._files import atomic_write
from emohrnet_fast.calibration import expected_calibration_error

if TYPE_CHECKING:
    from emohrnet_fast.data.corpus import Corpus, Waveforms
    from emohrnet_fast.infer import Predictor


@dataclass(frozen=True)
class Report:
    """Metrics of one evaluation. Fractions are in [0, 1]."""

    labels: tuple[str, ...]  # class names, in confusion-matrix order
    confusion: tuple[tuple[int, ...], ...]  # [true][predicted] counts
    wa: float  # weighted accuracy: correct / total
    ua: float  # unweighted accuracy: mean recall over the classes present in the truth
    macro_f1: float  # mean F1 over the classes present in the truth
    precision: tuple[float, ...]  # per class; NaN when the class is never predicted
    recall: tuple[float, ...]  # per class; NaN when the class never occurs
    f1: tuple[float, ...]  # per class; NaN when precision or recall is
    support: tuple[int, ...]  # true examples per class
    # Expected calibration error of the scores (emohrnet_fast.calibration); NaN: no scores given
    ece: float = math.nan
    meta: dict = field(default_factory=dict)  # free-form: corpus, protocol, fold, config, ...

    @classmethod
    def from_predictions(
        cls,
        y_true: Sequence[int] | Tensor,
        y_pred: Sequence[int] | Tensor,
        labels: Sequence[str],
        meta: dict | None = None,
        scores: Tensor | None = None,
    ) -> Report:
        """Metrics of integer predictions ``y_pred`` against ``y_true`` (both ``(N,)``, values in
        ``[0, len(labels))``); ``scores``, the ``(N, len(labels))`` probabilities behind them,
        adds the expected calibration error."""
        true, pred = _class_indices("y_true", y_true), _class_indices("y_pred", y_pred)
        k = len(labels)
        if k < 2:
            raise ValueError(f"labels: expected at least 2 classes, got {list(labels)}")
        if true.shape != pred.shape:
            raise ValueError(f"y_true and y_pred differ in length: {len(true)} vs {len(pred)}")
        if true.numel() == 0:
            raise ValueError("y_true: expected at least one example, got none")
        for name, t in (("y_true", true), ("y_pred", pred)):
            if t.min() < 0 or t.max() >= k:
                raise ValueError(
                    f"{name}: class indices must be in [0, {k}), got "
                    f"[{int(t.min())}, {int(t.max())}]"
                )
        confusion = torch.bincount(true * k + pred, minlength=k * k).reshape(k, k).tolist()
        support = [sum(row) for row in confusion]
        predicted = [sum(col) for col in zip(*confusion, strict=True)]
        precision, recall, f1 = [], [], []
        for i in range(k):
            hits = confusion[i][i]
            precision.append(hits / predicted[i] if predicted[i] else math.nan)
            recall.append(hits / support[i] if support[i] else math.nan)
            if not support[i]:
                f1.append(math.nan)
                continue
            p = precision[i] if predicted[i] else 0.0  # occurs, never predicted: F1 = 0
            f1.append(2 * p * recall[i] / (p + recall[i]) if p + recall[i] else 0.0)
        present = [i for i in range(k) if support[i]]
        ece = math.nan
        if scores is not None:
            if not isinstance(scores, Tensor) or tuple(scores.shape) != (len(true), k):
                shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores)
                raise ValueError(f"scores: expected shape ({len(true)}, {k}), got {shape}")
            ece = expected_calibration_error(scores, true)
        return cls(
            labels=tuple(labels),
            confusion=tuple(tuple(row) for row in confusion),
            wa=sum(confusion[i][i] for i in range(k)) / sum(support),
            ua=sum(recall[i] for i in present) / len(present),
            macro_f1=sum(f1[i] for i in present) / len(present),
            precision=tuple(precision),
            recall=tuple(recall),
            f1=tuple(f1),
            support=tuple(support),
            ece=ece,
            meta=dict(meta or {}),
        )

    def markdown(self) -> str:
        """The report as a markdown table (per class, then WA / UA / macro-F1)."""

        def pct(x: float) -> str:
            return "-" if math.isnan(x) else f"{100 * x:.1f}"

        lines = ["| class | support | precision % | recall % | F1 % |", "|---|---:|---:|---:|---:|"]
        for i, name in enumerate(self.labels):
            lines.append(
                f"| {name} | {self.support[i]} | {pct(self.precision[i])} | "
                f"{pct(self.recall[i])} | {pct(self.f1[i])} |"
            )
        lines.append("")
        calibration = "" if math.isnan(self.ece) else f", ECE {pct(self.ece)} %"
        lines.append(
            f"WA {pct(self.wa)} %, UA {pct(self.ua)} %, macro-F1 {pct(self.macro_f1)} % "
            f"over {sum(self.support)} examples{calibration}"
        )
        absent = [name for name, s in zip(self.labels, self.support, strict=True) if s == 0]
        if absent:
            lines.append(
                f"(absent from the truth, left out of UA and macro-F1: {', '.join(absent)})"
            )
        return "\n".join(lines) + "\n"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``report.json``, ``report.md`` and ``confusion.png`` (row-normalised colours,
        counts in the cells) into ``directory``; each file is written atomically."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(asdict(self), indent=2, default=str, allow_nan=True)
        atomic_write(out / "report.json", payload.encode())
        atomic_write(out / "report.md", self.markdown().encode())
        atomic_write(out / "confusion.png", self._confusion_png())
        return out

    def _confusion_png(self) -> bytes:
        import io

        import matplotlib

        matplotlib.use("Agg")  # no display needed; a no-op when already set
        import matplotlib.pyplot as plt

        counts = torch.tensor(self.confusion, dtype=torch.float64)
        rows = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
        k = len(self.labels)
        fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k), dpi=120)
        image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(k), self.labels, rotation=45, ha="right")
        ax.set_yticks(range(k), self.labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"WA {100 * self.wa:.1f} %  UA {100 * self.ua:.1f} %")
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    color="white" if rows[i, j] > 0.5 else "black",
                    fontsize=8,
                )
        fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        return buffer.getvalue()


def _class_indices(name: str, values: Sequence[int] | Tensor) -> Tensor:
    """``(N,)`` int64 on the CPU, or a ValueError naming ``name`` (floats are not truncated)."""
    t = values if isinstance(values, Tensor) else torch.as_tensor(values)
    if t.device.type == "meta":
        raise ValueError(f"{name}: a meta tensor holds no values")
    if t.dim() != 1:
        raise ValueError(
            f"{name}: expected (N,) class indices, got shape {tuple(t.shape)} "
            "(for logits pass logits.argmax(dim=1))"
        )
    if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise ValueError(f"{name}: expected integer class indices, got {t.dtype}")
    return t.cpu().long()


def evaluate(
    model: nn.Module | Sequence[nn.Module],
    dataset: Corpus,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    clip_seconds: float | None = None,
    speaker_audio: Corpus | None = None,
    meta: dict | None = None,
) -> Report:
    """Classify every utterance of ``dataset`` and score it: WA, UA, macro-F1, per class, and
    the expected calibration error of the model's scores (softmax of logits / temperature).

    Features are computed with the model's ``default_frontend`` (what it was trained on) and
    normalised by its ``input_norm``.

    Args:
        model: a trained :class:`~emohrnet_fast.models.base.EmotionModel` (e.g. from
            :func:`emohrnet_fast.load_model`); its ``labels`` name the classes. A model without
            labels must have as many classes as ``dataset.labels``, taken in that order. A
            list of models: an ensemble, scored on the mean of the members' calibrated
            probabilities (as :class:`~emohrnet_fast.ensemble.EnsemblePredictor` answers;
            classes in the first member's order; every member must know the same labels).
        dataset: a corpus with waveforms loaded at the model's sample rate (see
            :func:`emohrnet_fast.data.load_corpus`; ``corpus.subset(split.test)`` for a fold).
        batch_size: clips per forward pass.
        device: where to run; ``None``: the model's device.
        clip_seconds: score a centred window of this length (zero-padded when shorter), as
            training validates; ``None``: whole utterances, batched as :class:`~emohrnet_fast.
            Predictor` batches them (only clips of equal length share a batch, so each scores
            as :func:`~emohrnet_fast.predict` scores it; one shorter than the model's minimum
            is zero-padded to it, with a warning). A corpus where almost every length differs
            then runs nearly a clip per forward pass: pass ``clip_seconds`` for speed.
        speaker_audio: for a speaker-normalised model, unlabelled audio of the dataset's
            speakers (e.g. the training set): a speaker with utterances here is standardised
            with their statistics, the ones training gave that speaker, and every other
            speaker with the statistics of their own utterances in ``dataset`` (the default
            for all). Pass the training set when the dataset's speakers were also trained
            on (speaker-dependent splits): a test set's few clips of a speaker, with their
            own mix of emotions, give statistics unlike the training set's. Ignored for
            models trained without speaker normalisation.
        meta: stored in :attr:`Report.meta` (corpus, fold, ...).

    Returns:
        The :class:`Report` over the model's classes.

    Raises:
        ValueError: the dataset has no waveforms, is empty, is at another sample rate than
            the model, or holds labels the model was not trained on; a bad ``batch_size``;
            a speaker-normalised model and utterances without a speaker; an empty list of
            models, or members with different label sets.
    """
    from emohrnet_fast.checkpoint import emotion_model
    from emohrnet_fast.data.labels import column_order

    members = [emotion_model(m) for m in ([model] if isinstance(model, nn.Module) else model)]
    if not members:
        raise ValueError("model: an empty list; expected a model or a list of models")
    labels, targets = targets_for(members[0], dataset)
    scores = torch.zeros(len(dataset), len(labels))
    for i, member in enumerate(members):
        member_labels, _ = targets_for(member, dataset)
        columns = column_order(
            member_labels,
            labels,
            f"model[{i}] knows the labels {list(member_labels)}, model[0] {list(labels)}: "
            "an ensemble's members must classify the same emotions",
        )
        logits = dataset_logits(
            member,
            dataset,
            batch_size=batch_size,
            device=device if device is not None else next(member.parameters()).device,
            clip_seconds=clip_seconds,
            speaker_audio=speaker_audio,
        )
        probabilities = torch.softmax(logits / member.temperature, dim=1)
        scores = scores + probabilities[:, columns]
    scores = scores / len(members)
    info = {"utterances": len(dataset), "corpus": dataset.name, **(meta or {})}
    if len(members) > 1:
        info["ensemble_of"] = len(members)
    return Report.from_predictions(targets, scores.argmax(dim=1), labels, info, scores)


def targets_for(model: nn.Module, dataset: Corpus) -> tuple[tuple[str, ...], Tensor]:
    """The model's class names and the dataset's targets as indices into them."""
    labels = getattr(model, "labels", None)
    if labels is None:
        if getattr(model, "num_classes", None) != len(dataset.labels):
            raise ValueError(
                f"model has no labels and {getattr(model, 'num_classes', '?')} classes; the "
                f"dataset has {len(dataset.labels)} ({', '.join(dataset.labels)}): set "
                "model.labels to the class names"
            )
        labels = dataset.labels
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted({u.label for u in dataset.utterances} - set(index))
    if unknown:
        raise ValueError(
            f"dataset {dataset.name!r} has labels the model was not trained on: {unknown} "
            f"(model labels: {', '.join(labels)})"
        )
    return tuple(labels), torch.tensor([index[u.label] for u in dataset.utterances])


@torch.inference_mode()
def dataset_logits(
    model: nn.Module,
    dataset: Corpus,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    clip_seconds: float | None = None,
    speaker_audio: Corpus | None = None,
) -> Tensor:
    """``(len(dataset), num_classes)`` float32 logits on the CPU, in dataset order
    (``speaker_audio``: see :func:`evaluate`)."""
    from emohrnet_fast.checkpoint import emotion_model
    from emohrnet_fast.infer import Predictor

    resident = dataset.loaded_waveforms("dataset")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} is empty")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an integer >= 1")
    plain = emotion_model(model)
    frontend_config = plain.default_frontend
    if dataset.sample_rate != frontend_config.sample_rate:
        raise ValueError(
            f"dataset {dataset.name!r} is at {dataset.sample_rate} Hz, the model expects "
            f"{frontend_config.sample_rate} Hz: load it with "
            f"sample_rate={frontend_config.sample_rate}"
        )
    device = torch.device(device)
    # Graphs off: a one-off pass over a dataset gains little, and training calls this each
    # epoch with weights that change under it.
    predictor = Predictor(plain, device=device, batch_size=batch_size, cuda_graphs=False)
    waveforms = resident.to(device)
    out = torch.empty(len(dataset), plain.num_classes)
    if not plain.speaker_norm:
        _fill_logits(out, torch.arange(len(dataset)), predictor, dataset, waveforms, clip_seconds)
        return out
    # Each speaker's clips are scored with that speaker's statistics (speaker_norm.py).
    speakers = [u.speaker for u in dataset.utterances]
    if None in speakers:
        raise ValueError(
            f"dataset {dataset.name!r}: the model was trained with speaker normalisation, "
            f"which needs every utterance's speaker; {speakers.count(None)} have none"
        )
    known: dict[str | None, list[Tensor]] = {}
    if speaker_audio is not None:
        speaker_waveforms = speaker_audio.loaded_waveforms("speaker_audio")
        if speaker_audio.sample_rate != dataset.sample_rate:
            raise ValueError(
                f"speaker_audio {speaker_audio.name!r} is at {speaker_audio.sample_rate} Hz, "
                f"dataset {dataset.name!r} at {dataset.sample_rate} Hz"
            )
        for i, utterance in enumerate(speaker_audio.utterances):
            known.setdefault(utterance.speaker, []).append(speaker_waveforms[i])
    for speaker in sorted({s for s in speakers if s is not None}):  # all of them, checked above
        group = torch.tensor([i for i, s in enumerate(speakers) if s == speaker])
        audio = known.get(speaker) or [waveforms[i] for i in group.tolist()]
        predictor.adapt(audio, waveforms.sample_rate)
        _fill_logits(out, group, predictor, dataset, waveforms, clip_seconds)
    return out


def shared_speaker_audio(
    source: Corpus, dataset: Corpus, indices: Sequence[int] | None = None
) -> Corpus | None:
    """The utterances of ``source`` (those at ``indices``; default all) whose speakers
    ``dataset`` also has, or None: the ``speaker_audio`` (:func:`evaluate`) that scores
    ``dataset`` with the statistics a model trained on ``source`` gave those speakers."""
    speakers = {u.speaker for u in dataset.utterances}
    rows = range(len(source)) if indices is None else indices
    shared = [i for i in rows if source.utterances[i].speaker in speakers]
    return source.subset(shared) if shared else None


def _fill_logits(
    out: Tensor,
    rows: Tensor,
    predictor: Predictor,
    dataset: Corpus,
    waveforms: Waveforms,
    clip_seconds: float | None,
) -> None:
    """``out[rows]`` = the logits of those utterances: centred ``clip_seconds`` crops, or
    whole utterances in length buckets (each clip scores as predict() scores it)."""
    from emohrnet_fast.infer import _warn_short

    if clip_seconds is not None:
        clip = max(1, round(clip_seconds * waveforms.sample_rate))
        windows = [(chunk, clip) for chunk in rows.split(predictor.batch_size)]
    else:
        lengths = waveforms.lengths.cpu()[rows]
        short = int((lengths < predictor.min_samples).sum())
        if short:
            subject = f"{short} utterance{'s' if short > 1 else ''} of dataset {dataset.name!r}"
            _warn_short(f"{subject} {'are' if short > 1 else 'is'}", int(lengths.min()), predictor)
        order = torch.argsort(lengths, stable=True)
        sizes, counts = torch.unique_consecutive(lengths[order], return_counts=True)
        windows = [
            (rows[chunk], max(int(size), predictor.min_samples))
            for group, size in zip(order.split(counts.tolist()), sizes, strict=True)
            for chunk in group.split(predictor.batch_size)
        ]
    for chunk, width in windows:
        batch, _ = waveforms.crops(chunk.to(waveforms.data.device), width, 0.5)
        out[chunk] = predictor.batch_logits(batch)
