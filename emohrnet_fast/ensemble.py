"""Several trained models answering as one (a deployable ensemble).

The best EmoDB figures of this project are averages of a few models' probabilities
(``emohrnet-fast ensemble`` scores such averages over a cross-validation study);
:class:`EnsemblePredictor` runs the same average at inference: every member is a
:class:`~emohrnet_fast.infer.Predictor`, each clip's scores are the mean of the members'
calibrated probabilities (each member's softmax at its own temperature), in the first
member's label order. :func:`emohrnet_fast.predict` and :func:`emohrnet_fast.predict_timeline`
build one when ``model`` is a list, and the ``predict`` / ``timeline`` / ``demo`` commands when
``--model`` is repeated; :func:`emohrnet_fast.evaluate` scores the same average over a corpus
when given a list of models (``evaluate --checkpoint A --checkpoint B``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from emohrnet_fast.data.labels import column_order
from emohrnet_fast.infer import (
    AudioInput,
    Precision,
    Predictor,
    Timeline,
    _check_top_k,
    _ranked,
)
from emohrnet_fast.models.base import EmotionModel

Member = str | os.PathLike | EmotionModel | Predictor


class EnsemblePredictor:
    """Several models that classify clips together: the mean of their probabilities.

    Args:
        models: two or more members (one works too, and answers as that model alone): a
            :class:`~emohrnet_fast.infer.Predictor`, or whatever ``Predictor`` loads
            (``"default"``, a checkpoint or run folder, an ``EmotionModel`` in memory).
        device, precision, batch_size, cuda_graphs, compile: as for ``Predictor``, for the
            members given as models or paths (a member given as a ``Predictor`` keeps its own).

    Every member must know the same set of labels (in any order: each member's columns are
    put in the first member's order). Members may differ in architecture, features and sample
    rate; when all share one rate, files are decoded and arrays resampled once for all of them.
    The average is of calibrated probabilities (``softmax(logits / temperature)`` per member,
    temperatures fitted on held-out speakers by ``export``); the average itself is not
    recalibrated, and averaging tends to soften overconfident members. (``ensemble_studies``
    scores the mean of the plain softmax, before temperatures: a borderline clip can rank
    differently here.)

    Raises:
        ValueError: no members, a single path or model instead of a sequence, or members
            whose label sets differ (the message names the member and the labels).
        And whatever ``Predictor`` raises for a member.
    """

    def __init__(
        self,
        models: Sequence[Member],
        device: torch.device | str | None = None,
        precision: Precision = "auto",
        *,
        batch_size: int = 64,
        cuda_graphs: bool = True,
        compile: bool = False,
    ) -> None:
        if isinstance(models, str | os.PathLike | nn.Module | Predictor) or not isinstance(
            models, Sequence
        ):
            raise ValueError(
                f"models: expected a list of models or checkpoint folders, got "
                f"{type(models).__name__} (one model: use Predictor)"
            )
        if len(models) == 0:
            raise ValueError("models: the ensemble needs at least one member")
        self.members: list[Predictor] = [
            member
            if isinstance(member, Predictor)
            else Predictor(
                member,
                device,
                precision,
                batch_size=batch_size,
                cuda_graphs=cuda_graphs,
                compile=compile,
            )
            for member in models
        ]
        first = self.members[0]
        self.labels: tuple[str, ...] = first.labels
        # Per member, the indices of its columns in the order of self.labels.
        self._columns: list[list[int]] = [
            column_order(
                member.labels,
                self.labels,
                f"models[{i}] ({_name(member)}) knows the labels {list(member.labels)}, "
                f"models[0] ({_name(first)}) {list(self.labels)}: an ensemble's members "
                "must classify the same emotions",
            )
            for i, member in enumerate(self.members)
        ]
        self.sample_rate: int = first.sample_rate
        self._shared_rate = all(m.sample_rate == self.sample_rate for m in self.members)

    def __repr__(self) -> str:
        members = ", ".join(_name(m) for m in self.members)
        return f"EnsemblePredictor([{members}], labels={list(self.labels)})"

    def __len__(self) -> int:
        return len(self.members)

    def __call__(
        self, audio: AudioInput, sample_rate: int | None = None, *, top_k: int | None = None
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """``[{"label": str, "score": float}, ...]`` sorted by score, highest first, for one
        clip or path; a list of those for a batch or a list (as ``Predictor.__call__``, with
        the same input rules and errors)."""
        _check_top_k(top_k)
        scores = self.probabilities(audio, sample_rate)
        single = scores.ndim == 1
        results = [
            _ranked(row, self.labels, top_k)
            for row in scores.reshape(-1, len(self.labels)).tolist()
        ]
        return results[0] if single else results

    def probabilities(self, audio: AudioInput, sample_rate: int | None = None) -> Tensor:
        """The members' mean probabilities, float32 on the CPU: ``(n_classes,)`` for one clip
        or path, ``(clips, n_classes)`` for a batch or a list; columns in :attr:`labels`."""
        audio, sample_rate = self._decoded(audio, sample_rate)
        return torch.stack(
            [
                member.probabilities(audio, sample_rate)[..., columns]
                for member, columns in zip(self.members, self._columns, strict=True)
            ]
        ).mean(0)

    def timeline(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        *,
        window_s: float = 2.0,
        hop_s: float = 0.5,
    ) -> Timeline:
        """:meth:`Predictor.timeline` of every member over one long clip or file, their
        window probabilities averaged.

        Raises:
            ValueError: members at different sample rates placed the windows differently
                (their window or hop is a different whole number of samples), and the errors
                of ``Predictor.timeline``.
        """
        audio, sample_rate = self._decoded(audio, sample_rate)
        timelines = [
            member.timeline(audio, sample_rate, window_s=window_s, hop_s=hop_s)
            for member in self.members
        ]
        first = timelines[0]
        for i, other in enumerate(timelines[1:], 1):
            if len(other) != len(first) or not torch.allclose(
                other.starts, first.starts, rtol=0.0, atol=1e-3
            ):
                raise ValueError(
                    f"timeline: models[{i}] ({_name(self.members[i])}, "
                    f"{self.members[i].sample_rate} Hz) placed {len(other)} windows, models[0] "
                    f"({self.sample_rate} Hz) {len(first)}, at other times: choose window_s "
                    "and hop_s that are whole numbers of samples at every member's rate"
                )
        probabilities = torch.stack(
            [
                t.probabilities[:, columns]
                for t, columns in zip(timelines, self._columns, strict=True)
            ]
        ).mean(0)
        return Timeline(
            labels=self.labels,
            starts=first.starts,
            ends=first.ends,
            probabilities=probabilities,
            duration=first.duration,
            window_s=first.window_s,
            hop_s=first.hop_s,
        )

    def adapt(self, audio: AudioInput | None, sample_rate: int | None = None) -> EnsemblePredictor:
        """:meth:`Predictor.adapt` for every speaker-normalised member (the others need no
        speaker statistics); ``None`` forgets them. Returns the ensemble.

        Raises:
            ValueError: no member was trained with speaker normalisation, and the errors of
                ``Predictor.adapt``.
        """
        normalised = [m for m in self.members if m.model.speaker_norm]
        if not normalised:
            raise ValueError(
                "adapt(): no member of this ensemble was trained with speaker normalisation "
                "(TrainConfig.speaker_norm=False), so none needs speaker statistics"
            )
        audio, sample_rate = self._decoded(audio, sample_rate)
        for member in normalised:
            member.adapt(audio, sample_rate)
        return self

    # ------------------------------------------------------------------ internals
    def _decoded(
        self, audio: AudioInput | None, sample_rate: int | None
    ) -> tuple[AudioInput | None, int | None]:
        """Paths decoded and arrays resampled once, when every member hears one rate."""
        if audio is None or not self._shared_rate or len(self.members) == 1:
            return audio, sample_rate
        clips, single = self.members[0]._clips(audio, sample_rate, pad=False)
        if single:
            return clips[0], self.sample_rate
        return clips, self.sample_rate


def _name(member: Predictor) -> str:
    return str(Path(member.source).name) if member.source is not None else "<in memory>"
