"""Training: resident waveforms, fused features + SpecAugment, checkpoints, resume, torchrun.

The data path has no DataLoader: the training set's decoded waveforms are moved to the device
once (one flat tensor, see :class:`~emohrnet_fast.data.Waveforms`), and each step gathers a
batch of random crops by index, computes the log-Mel features with the fused kernel (which
also writes the SpecAugment masks in the same pass) and runs the model. Nothing in a step
waits on Python or the host except the progress bar's refresh every ``_REFRESH_STEPS`` steps.

Determinism: every random draw (weights, batch order, crops, masks, dropout) derives from
``config.seed`` and the epoch number, so a run resumed from a checkpoint continues exactly
as the uninterrupted run would have (bit for bit on CPU). On CUDA, cuDNN's convolution
backward and ``index_add_`` are not bit-exact run to run; results agree to rounding.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from emohrnet_fast import checkpoint
from emohrnet_fast._files import atomic_write
from emohrnet_fast._info import resolve_device
from emohrnet_fast.augment import SpecAugment
from emohrnet_fast.config import SpecAugmentConfig, TrainConfig
from emohrnet_fast.data.corpus import Corpus
from emohrnet_fast.evaluate import Report, dataset_logits, shared_speaker_audio, targets_for
from emohrnet_fast.features import FrontEnd
from emohrnet_fast.losses import CenterLoss
from emohrnet_fast.models.base import EmotionModel
from emohrnet_fast.models.registry import create
from emohrnet_fast.ops.spec_augment import MaskParams, spec_augment
from emohrnet_fast.speaker_norm import SpeakerStats, band_moments, speaker_scale

_REFRESH_STEPS = 10  # progress-bar refresh (one host sync) every this many steps
# Fields that may differ between a checkpoint and the config resuming it.
_RESUMABLE_CHANGES = ("epochs", "device", "compile", "compile_mode")
# Samples per front-end call when measuring feature statistics over whole utterances (~4 min
# at 16 kHz): bounds the memory a corpus of long recordings takes there.
_MOMENT_CHUNK_SAMPLES = 1 << 22


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: EmotionModel  # the model after the last epoch (eval mode, on the training device)
    history: list[dict[str, Any]]  # one row per epoch: loss, accuracy, val metrics, seconds
    best_epoch: int | None  # epoch with the best validation UA; None without a val set
    val_report: Report | None  # validation report of the last epoch
    out_dir: Path | None  # the run folder (None: nothing written)
    last_checkpoint: Path | None = None  # checkpoints/epoch-NNNN of the last epoch
    best_checkpoint: Path | None = None  # checkpoints/epoch-NNNN of the best epoch
    resumed_from: int = 0  # epochs already done when this call started
    # What TrainConfig.init_from gave the model (None: random initialisation, or resumed).
    init_report: checkpoint.InitReport | None = None


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging).

    ``average`` is a copy of the model (eval mode, no gradients) whose parameters and
    floating-point buffers (BatchNorm's running statistics, input_norm) follow the model's as
    ``average += (1 - d) * (model - average)`` at every :meth:`update`, with
    ``d = min(decay, (1 + step) / (10 + step))``; integer buffers are copied.
    """

    def __init__(self, model: EmotionModel, decay: float) -> None:
        self.decay = decay
        self.average = copy.deepcopy(model).eval().requires_grad_(False)
        pairs: list[tuple[Tensor, Tensor]] = []
        pairs += zip(self.average.parameters(), model.parameters(), strict=True)
        pairs += zip(self.average.buffers(), model.buffers(), strict=True)
        # (averaged, current) tensor lists, split once: each step is then two foreach calls,
        # not a kernel per tensor (a GPU step is launch-bound).
        floats = [pair for pair in pairs if pair[0].is_floating_point()]
        others = [pair for pair in pairs if not pair[0].is_floating_point()]
        self._floats = ([a for a, _ in floats], [c for _, c in floats])
        self._others = ([a for a, _ in others], [c for _, c in others])

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Blend the model's current weights in; ``step`` counts earlier updates (from 0)."""
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(*self._floats, 1.0 - decay)
        if self._others[0]:
            torch._foreach_copy_(*self._others)


def speaker_confusion(head: nn.Linear, embedding: Tensor) -> tuple[Tensor, Tensor]:
    """The two halves of speaker-adversarial training for ``embedding (B, D)``: the head's
    ``(B, K)`` logits on the detached embedding (a cross-entropy on them trains the head
    only) and, through the head frozen, the cross-entropy of its guess against the uniform
    distribution over the K speakers (trains the model only; minimal, log K, when the head
    cannot tell the speakers apart)."""
    frozen = F.linear(embedding, head.weight.detach(), head.bias.detach())
    confusion = -F.log_softmax(frozen, dim=1).mean()
    return head(embedding.detach()), confusion


# Gloo's worker threads free a finished collective's tensors, which needs the GIL; the process
# group's destructor joins those threads while the main thread holds the GIL. Holding the
# latest collectives here until the group is gone keeps the workers from being their last
# owner at that moment (a deadlock seen under torchrun on 2 busy cores). Process-wide, like
# the group: a study's folds share one (process_group).
_recent_collectives: list[dist.Work] = []


def _seed(base: int, rank: int) -> int:
    """A generator seed from a run's ``base`` seed and a torchrun rank: ``base`` itself on
    rank 0 (a one-process run's draws), a far-off seed on the others, always in [0, 2**63)."""
    return (base + rank * 0x9E3779B97F4A7C15) % 2**63


class _Distributed:
    """torchrun environment: rank, world size, and the collective helpers we need."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """This rank's device (under torchrun, CUDA means the local rank's GPU); joins the
        process group unless the caller already has (it then stays the caller's to destroy)."""
        if self.active and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        if self.active and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.owns_group = True
        return device

    def stop(self) -> None:
        """Destroy the group we created; drop the wrappers that share it (DDP) first."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            _recent_collectives.clear()

    def _wait(self, work: dist.Work) -> None:
        work.wait()
        _recent_collectives.append(work)

    def sum_(self, tensor: Tensor) -> Tensor:
        if self.active:
            self._wait(dist.all_reduce(tensor, async_op=True))
        return tensor

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers everywhere (BatchNorm statistics drift apart after each rank's
        last forward; DDP only syncs them at the start of the next one)."""
        if self.active:
            for buffer in module.buffers():
                self._wait(dist.broadcast(buffer, src=0, async_op=True))

    def barrier(self) -> None:
        if self.active:
            _recent_collectives.clear()  # all of them finished before this barrier
            self._wait(dist.barrier(async_op=True))


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Hold one torchrun process group across several :func:`train` calls (a study's folds);
    yields this rank's device. A group made and destroyed per call would find the previous
    group's addresses, stale, in torchrun's store. Outside torchrun: just ``device``."""
    env = _Distributed()
    try:
        yield env.start(device)
    finally:
        env.stop()


def is_main_process() -> bool:
    """False in torchrun's ranks other than 0: they train alongside rank 0, which alone writes
    files and prints results."""
    return _Distributed().main


def train(
    config: TrainConfig,
    train_set: Corpus,
    val_set: Corpus | None = None,
    *,
    teachers: Sequence[nn.Module] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train ``config.model`` on ``train_set``; checkpoint every epoch; validate on ``val_set``.

    Under ``torchrun --nproc_per_node=N`` the same call trains with DistributedDataParallel
    (NCCL on CUDA, gloo on CPU): each rank keeps its shard of the training waveforms
    resident, ``batch_size`` is per rank, metrics are summed over ranks and only rank 0
    writes checkpoints and validates. Several calls in one torchrun process (as
    :func:`cross_validate` makes) belong inside one ``with process_group(device):``.

    Args:
        config: the run's settings (:class:`~emohrnet_fast.TrainConfig`).
        train_set: a corpus with waveforms loaded at the front-end's sample rate (e.g.
            ``corpus.subset(split.train)``). Its ``labels`` are the model's classes.
        val_set: optional; scored after every epoch (centred ``clip_seconds`` windows, or
            whole utterances with ``eval_whole``), and
            the epoch with the best UA is kept as the best checkpoint.
        teachers: trained models to distil from when ``config.distill_weight > 0`` (e.g. a
            seed ensemble's models; :func:`load_model` gives them from checkpoints). Each
            scores every training utterance once (:func:`teacher_probabilities`); they must
            know the training set's classes and must not have heard ``val_set``'s speakers
            if its figures are to stay unbiased. A resumed run needs the same teachers.
        out_dir: run folder for checkpoints (``checkpoints/epoch-NNNN``, last and best
            kept), ``train_config.json`` and ``history.csv``; ``None``: nothing is written.
        resume: continue from the last complete checkpoint in ``out_dir`` (a run killed
            mid-epoch loses at most that epoch); starts fresh when there is none. The config
            must equal the checkpoint's except ``epochs``, ``device``, ``compile`` and
            ``compile_mode``; a new ``epochs`` stretches the cosine schedule from that point
            on.
        progress: a tqdm bar per epoch (loss, accuracy, clips/s); ``None``: only when stderr
            is a terminal.
        quiet: no per-epoch summary lines.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: an empty training set, no waveforms, a sample-rate mismatch, validation
            labels unseen in training, teachers without ``distill_weight`` (or the
            reverse) or a teacher lacking one of the training classes, ``speaker_norm`` or
            ``speaker_adversarial`` with utterances of unknown speaker (or the latter with
            one training speaker), an ``out_dir`` holding another run without ``resume``,
            or a checkpoint written with a different config (the message names the
            differing fields).
        TrainingDiverged: the loss became NaN/Inf (the last good checkpoint stays).
        OSError: a checkpoint could not be written (disk full); the previous one is intact.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected TrainConfig, got {type(config).__name__}")
    device = resolve_device(config.device, "TrainConfig.device")
    labels = _check_data(train_set, val_set)
    teachers = list(teachers)
    check_distillation(len(teachers), config)
    run = Path(out_dir) if out_dir is not None else None
    env = _Distributed()
    device = env.start(device)
    trainer = None
    try:
        trainer = _Trainer(config, train_set, val_set, labels, device, env, run, teachers)
        return trainer.fit(resume=resume, progress=progress, quiet=quiet)
    finally:
        if trainer is not None:  # DDP's reducer owns the process group: it goes first
            trainer.forward = None
        env.stop()


def check_distillation(teachers: int, config: TrainConfig) -> None:
    """Teachers and ``config.distill_weight > 0`` come together or not at all."""
    if bool(teachers) != (config.distill_weight > 0):
        raise ValueError(
            f"teachers: {teachers} given with TrainConfig.distill_weight="
            f"{config.distill_weight}: distillation needs both (or neither)"
        )


@torch.inference_mode()
def teacher_probabilities(
    teachers: Sequence[nn.Module],
    dataset: Corpus,
    labels: Sequence[str],
    temperature: float,
    *,
    device: torch.device | str = "cpu",
    clip_seconds: float | None = None,
) -> Tensor:
    """The teachers' mean softened softmax over ``dataset``: ``(len(dataset), len(labels))``.

    Each teacher scores every utterance as :func:`~emohrnet_fast.evaluate.dataset_logits`
    does (centred ``clip_seconds`` crops, per-speaker statistics for speaker-normalised
    teachers); its logits, divided by ``temperature``, go through a softmax over the
    columns of ``labels`` (its other classes, if any, are left out) and the rows are averaged
    over the teachers.

    Raises:
        ValueError: no teachers, or a teacher without one of ``labels``.
    """
    if not teachers:
        raise ValueError("teachers: expected at least one model")
    total = torch.zeros(len(dataset), len(labels))
    for number, teacher in enumerate(teachers):
        known = tuple(getattr(checkpoint.unwrap(teacher), "labels", None) or ())
        missing = [name for name in labels if name not in known]
        if missing:
            raise ValueError(
                f"teachers[{number}] knows classes {list(known)}, not {missing} of the "
                "training set: a teacher must have been trained on the same classes"
            )
        logits = dataset_logits(teacher, dataset, device=device, clip_seconds=clip_seconds)
        columns = torch.tensor([known.index(name) for name in labels])
        total += torch.softmax(logits[:, columns].double() / temperature, dim=1).float()
    return total / len(teachers)


def _check_data(train_set: Corpus, val_set: Corpus | None) -> tuple[str, ...]:
    for name, data in (("train_set", train_set), ("val_set", val_set)):
        if data is None and name == "val_set":
            continue
        if not isinstance(data, Corpus):
            raise TypeError(f"{name}: expected a Corpus, got {type(data).__name__}")
        if len(data) == 0:
            raise ValueError(f"{name} ({data.name}) is empty: no utterances to use")
        data.loaded_waveforms(name)
    present = {u.label for u in train_set.utterances}
    labels = tuple(label for label in train_set.labels if label in present)
    if len(labels) < 2:
        raise ValueError(f"train_set has {len(labels)} label(s) {labels}: need at least 2")
    if val_set is not None:
        unseen = sorted({u.label for u in val_set.utterances} - set(labels))
        if unseen:
            raise ValueError(
                f"val_set has labels never seen in train_set: {unseen} (train labels: "
                f"{', '.join(labels)})"
            )
    return labels


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        train_set: Corpus,
        val_set: Corpus | None,
        labels: tuple[str, ...],
        device: torch.device,
        env: _Distributed,
        run: Path | None,
        teachers: Sequence[nn.Module] = (),
    ) -> None:
        self.config, self.labels = config, labels
        # Validation audio moves to the device once, not at every epoch's validation.
        self.val_set = val_set
        self.val_speaker_audio = None
        if val_set is not None:
            self.val_set = dataclasses.replace(
                val_set, waveforms=val_set.loaded_waveforms("val_set").to(device)
            )
            if config.speaker_norm:  # validation speakers who also train keep those statistics
                unknown = sum(u.speaker is None for u in val_set.utterances)
                if unknown:
                    raise ValueError(
                        "TrainConfig.speaker_norm=True validates each speaker with that "
                        f"speaker's statistics: {unknown} of {len(val_set)} utterances in "
                        f"val_set {val_set.name!r} have no speaker"
                    )
                self.val_speaker_audio = shared_speaker_audio(train_set, val_set)
        self.device, self.env, self.run = device, env, run
        torch.manual_seed(config.seed)  # the weights: same on every rank
        overrides = dict(config.model_overrides)
        if config.frontend is not None:
            overrides["frontend"] = config.frontend
        model = create(config.model, len(labels), **overrides)
        model.labels = labels
        model.speaker_norm = config.speaker_norm
        self.model = model.to(device)
        frontend_config = model.default_frontend
        for name, data in (("train_set", train_set), ("val_set", val_set)):
            if data is not None and data.sample_rate != frontend_config.sample_rate:
                raise ValueError(
                    f"{name} is at {data.sample_rate} Hz but the model's front-end expects "
                    f"{frontend_config.sample_rate} Hz: load the corpus with "
                    f"sample_rate={frontend_config.sample_rate}"
                )
        self.frontend = FrontEnd(frontend_config).to(device)
        self.clip = max(1, round(config.clip_seconds * frontend_config.sample_rate))
        # Predictor's rule: shorter clips are zero-padded to the model's smallest input.
        self.min_samples = frontend_config.min_samples(int(getattr(model, "min_size", 1)))
        self.frames = frontend_config.num_frames(self.clip)
        self.n_features = frontend_config.n_features
        policy = config.spec_augment
        if policy == "auto":
            policy = SpecAugmentConfig() if model.uses_spec_augment else None
        self.augment = SpecAugment.from_config(policy) if policy is not None else None

        # This rank's shard of the training data, resident on the device. Every rank gets the
        # same count (wrapping around) so all take the same number of steps.
        index = {name: i for i, name in enumerate(labels)}
        targets = torch.tensor([index[u.label] for u in train_set.utterances])
        n = len(train_set)
        per_rank = math.ceil(n / env.world)
        shard = (torch.arange(per_rank) * env.world + env.rank) % n
        self.waveforms = train_set.subset(shard).loaded_waveforms("train_set").to(device)
        self.targets = targets[shard].to(device)
        # Distillation's soft targets, (per_rank, classes), scored once here.
        self.teacher_probs: Tensor | None = None
        if teachers:
            probs = teacher_probabilities(
                teachers,
                train_set,
                labels,
                config.distill_temperature,
                device=device,
                clip_seconds=config.eval_clip_seconds,
            )
            self.teacher_probs = probs[shard].to(device)
        self.batch = min(config.batch_size, per_rank)
        # Each training clip's speaker: for per-speaker statistics (speaker normalisation) and
        # as the adversary's target.
        self.speaker_stats: SpeakerStats | None = None
        if config.speaker_norm or config.speaker_adversarial > 0:
            unknown = sum(u.speaker is None for u in train_set.utterances)
            if unknown:
                option = (
                    "speaker_norm=True"
                    if config.speaker_norm
                    else f"speaker_adversarial={config.speaker_adversarial!r}"
                )
                raise ValueError(
                    f"TrainConfig.{option} needs every training utterance's speaker: "
                    f"{unknown} of {n} in train_set {train_set.name!r} have none"
                )
            speakers = sorted({u.speaker for u in train_set.utterances if u.speaker is not None})
            position: dict[str | None, int] = {name: i for i, name in enumerate(speakers)}
            ids = torch.tensor([position[u.speaker] for u in train_set.utterances])
            self.speaker_ids = ids[shard].to(device)
            self.speaker_count = len(speakers)
        self.class_weights = None
        if config.balance_classes:
            # Every label occurs in train_set (_check_data keeps only those), so no count is 0.
            counts = torch.bincount(targets, minlength=len(labels)).float()
            self.class_weights = (n / (len(labels) * counts)).to(device)
        # Drop the ragged last batch: a batch of 1 breaks BatchNorm, and equal batches let
        # CUDA graphs and torch.compile reuse one shape.
        self.steps_per_epoch = per_rank // self.batch
        self.train_size = n
        # What a resume must find again (checked in _restore).
        self.data_fingerprints = {
            "train_data": train_set.fingerprint(),
            "val_data": val_set.fingerprint() if val_set is not None else None,
        }

        self.center_loss = None
        if model.uses_center_loss and config.center_loss_weight > 0 and config.mixup > 0:
            raise ValueError(
                f"TrainConfig.mixup={config.mixup!r} with {config.model}'s center loss: a mixed "
                "clip has no single class centre; set center_loss_weight=0 or mixup=0"
            )
        if model.uses_center_loss and config.center_loss_weight > 0:
            self.center_loss = CenterLoss(len(labels), model.embedding_dim, config.center_alpha)
            self.center_loss.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        self.speaker_head: nn.Linear | None = None
        if config.speaker_adversarial > 0:
            if self.speaker_count < 2:
                raise ValueError(
                    f"TrainConfig.speaker_adversarial={config.speaker_adversarial!r} needs at "
                    f"least two training speakers; train_set {train_set.name!r} has "
                    f"{self.speaker_count}"
                )
            with torch.random.fork_rng(devices=[]):  # the run's other draws stay as without it
                self.speaker_head = nn.Linear(model.embedding_dim, self.speaker_count)
            self.speaker_head.to(device)
            params += list(self.speaker_head.parameters())
        optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        # On a GPU the update is launch-bound (EmoHRNet-small has 281 parameter tensors): the
        # fused implementation updates them all in a few kernels.
        self.optimizer = optimizer_class(
            params,
            lr=config.lr,
            weight_decay=config.weight_decay,
            fused=True if device.type == "cuda" else None,
        )
        self.total_steps = self.steps_per_epoch * config.epochs
        # The module the steps call; wrappers share self.model's parameters and buffers.
        # channels_last: cuDNN's fast convolutions are NHWC, and oneDNN's on the CPU too (an
        # EmoHRNet-small training step 1.14x faster on a 2-core Xeon: BENCHMARKS.md).
        # (torch's overloads of Module.to omit memory_format, which it accepts)
        forward = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if config.compile:
            forward = torch.compile(forward, mode=config.compile_mode)
        # CUDA graph trees reuse their output memory from one replay to the next; a new step
        # tells them the previous step's outputs are dead.
        self.graphed = config.compile and config.compile_mode == "reduce-overhead"
        if env.active:
            # A decoder whose loss weight is 0 runs but gets no gradient: DDP must expect that.
            unused = getattr(model, "decoder", None) is not None and not (
                config.reconstruction_weight > 0
            )
            forward = nn.parallel.DistributedDataParallel(
                forward,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=unused,
            )
        self.forward = forward
        # With ema_decay, the averaged copy is what validates, is saved and is returned.
        self.ema: WeightAverage | None = None
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None
        self.best_ua = -math.inf

    # ----------------------------------------------------------------------------- run
    def fit(self, *, resume: bool, progress: bool | None, quiet: bool) -> TrainResult:
        config = self.config
        start = self._restore(resume)
        init_report = None
        if start == 0 and config.init_from is not None:
            # Every rank reads the same file, so DDP's replicas stay equal.
            init_report = checkpoint.init_weights(self.model, config.init_from, self.labels)
            if self.env.main and not quiet:
                print(init_report.summary(), file=sys.stderr, flush=True)
        fit_input_norm = start == 0 and config.normalize
        # The speaker statistics come from the data alone, so a resumed run computes them again.
        if fit_input_norm or config.speaker_norm:
            moments = self._feature_moments()
            if fit_input_norm:
                self._set_input_norm(moments)
            if config.speaker_norm:
                self.speaker_stats = SpeakerStats.from_moments(moments)
        if config.ema_decay > 0 and self.ema is None:  # after input_norm: the copy has it
            self.ema = WeightAverage(self.model, config.ema_decay)
        if self.run is not None and self.env.main:
            self.run.mkdir(parents=True, exist_ok=True)
            atomic_write(
                self.run / "train_config.json",
                _json({"train_config": config.to_dict(), "labels": list(self.labels)}),
            )
        val_report = None
        for epoch in range(start + 1, config.epochs + 1):
            row = self._train_epoch(epoch, progress)
            if self.val_set is not None and self.env.main:
                val_report = self._validate()
                row.update(val_wa=val_report.wa, val_ua=val_report.ua, val_f1=val_report.macro_f1)
                if val_report.ua > self.best_ua:
                    self.best_ua, self.best_epoch = val_report.ua, epoch
            self.history.append(row)
            if self.env.main:
                self._save(epoch)
                if not quiet:
                    print(_summary_line(row, config.epochs), file=sys.stderr, flush=True)
            self.env.barrier()
        self.output_model.eval()
        result = TrainResult(
            model=self.output_model,
            history=self.history,
            best_epoch=self.best_epoch,
            val_report=val_report,
            out_dir=self.run,
            resumed_from=start,
            init_report=init_report,
        )
        if self.run is not None:
            epochs = checkpoint.epoch_dirs(self.run)
            result.last_checkpoint = epochs[-1] if epochs else None
            if self.best_epoch is not None:
                result.best_checkpoint = self._epoch_dir(self.best_epoch)
        return result

    @property
    def output_model(self) -> EmotionModel:
        """The model that validates, is saved and is returned: the average with ema_decay."""
        return self.ema.average if self.ema is not None else self.model

    def _feature_moments(self) -> Tensor:
        """:func:`~emohrnet_fast.speaker_norm.band_moments` of the training utterances'
        features (no masks), over all ranks: a row per speaker with ``speaker_norm``, else one.

        Each utterance counts whole, as :meth:`Predictor.adapt` and evaluation measure a test
        speaker, not as the ``clip_seconds`` crops training draws: crops shorter than the
        utterances, or padded with silence past them, would give a speaker statistics other
        than those the same audio gets at test time. A clip that sits on two ranks' shards
        (the wrap-around that evens them) counts twice."""
        groups = self.speaker_ids if self.config.speaker_norm else None
        count = self.speaker_count if groups is not None else 1
        moments = torch.zeros(3, count, self.n_features, dtype=torch.float64, device=self.device)
        widths = self.waveforms.lengths.clamp(min=self.min_samples)
        with torch.no_grad():
            for width in widths.unique().tolist():  # equal lengths share a front-end call
                same = torch.nonzero(widths == width).flatten()
                for chunk in same.split(max(1, _MOMENT_CHUNK_SAMPLES // width)):
                    batch, _ = self.waveforms.crops(chunk, width)
                    chunk_groups = groups[chunk] if groups is not None else None
                    moments += band_moments(self.frontend(batch), chunk_groups, count)
        return self.env.sum_(moments)

    def _set_input_norm(self, moments: Tensor) -> None:
        """input_norm's scalar mean and std: ``moments`` pooled over speakers and bands."""
        total, square, count = moments.sum(dim=(1, 2)).tolist()
        mean = total / count
        std = math.sqrt(max(square / count - mean * mean, 0.0)) or 1.0
        self.model.input_norm.mean.fill_(mean)
        self.model.input_norm.std.fill_(std)

    # --------------------------------------------------------------------------- epoch
    def _train_epoch(self, epoch: int, progress: bool | None) -> dict[str, Any]:
        config, device = self.config, self.device
        self.forward.train()
        if self.center_loss is not None:
            self.center_loss.train()
        # Everything random in this epoch derives from (seed, epoch, rank): resume reproduces
        # it, and each rank draws its own crops, masks and dropout.
        torch.manual_seed(_seed(config.seed * 1_000_003 + epoch, self.env.rank))
        generator = torch.Generator(device=device)
        generator.manual_seed(_seed(config.seed * 7919 + epoch, self.env.rank))
        order = torch.randperm(len(self.waveforms), generator=generator, device=device)
        sums = torch.zeros(3, device=device)  # loss * count, correct, count
        bad = torch.zeros((), dtype=torch.bool, device=device)
        disable = (not sys.stderr.isatty()) if progress is None else not progress
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="step",
            disable=disable or not self.env.main,
            leave=False,
        )
        started = time.perf_counter()
        with bar:
            for step in range(self.steps_per_epoch):
                index = order[step * self.batch : (step + 1) * self.batch]
                loss, logits = self._step(index, generator)
                target = self.targets[index]
                with torch.no_grad():
                    sums[0] += loss.detach() * index.numel()
                    sums[1] += (logits.argmax(dim=1) == target).sum()
                    sums[2] += index.numel()
                    bad |= ~torch.isfinite(loss.detach())
                bar.update()
                if (step + 1) % _REFRESH_STEPS == 0 or step + 1 == self.steps_per_epoch:
                    if bool(bad):  # the one host sync of these steps
                        raise TrainingDiverged(self._diverged_message(epoch, step))
                    loss_sum, correct, count = sums.tolist()
                    seconds = time.perf_counter() - started
                    bar.set_postfix(
                        loss=f"{loss_sum / count:.3f}",
                        acc=f"{correct / count:.3f}",
                        clips_s=f"{(step + 1) * self.batch * self.env.world / seconds:.0f}",
                    )
        loss_sum, correct, count = self.env.sum_(sums).tolist()
        self.env.broadcast_buffers(self.model)
        if self.ema is not None:  # averaged from rank 0's BatchNorm statistics, like the model
            self.env.broadcast_buffers(self.ema.average)
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "clips_per_s": count / seconds,
        }

    def _step(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        config = self.config
        if self.graphed:
            torch.compiler.cudagraph_mark_step_begin()
        batch = index.numel()
        position = torch.rand(batch, device=self.device, generator=generator)
        speed = None
        if config.speed_perturb > 0:
            uniform = torch.rand(batch, device=self.device, generator=generator)
            speed = 1.0 + config.speed_perturb * (2.0 * uniform - 1.0)
        waveform, _ = self.waveforms.crops(index, self.clip, position, speed)
        masks = None
        fused = self.augment is not None and self.augment.mask_value != "mean"
        if self.augment is not None and fused:
            masks = self.augment.draw(
                batch, self.n_features, self.frames, self.device, generator=generator
            )
            # mask_value is in normalised units: the fill must be so after input_norm.
            norm = self.model.input_norm
            masks = MaskParams(masks.freq, masks.time, masks.values * norm.std + norm.mean)
        with torch.no_grad():
            if self.speaker_stats is None:
                features = self.frontend(waveform, augment=masks)
            else:  # the masks' fill is in input_norm's scale: masked after the rescaling
                features = self.frontend(waveform)
                speaker = self.speaker_ids[index]
                everyone = self.speaker_stats
                stats = SpeakerStats(everyone.mean[speaker], everyone.std[speaker])
                features = speaker_scale(features, stats, self.model.input_norm)
                if masks is not None:
                    features = spec_augment(features, masks)
            if self.augment is not None and not fused:
                features = self.augment(features, generator=generator)
            if config.mixup > 0:
                # lam from (seed, step): the same on every rank, and again after a resume.
                lam = float(
                    np.random.default_rng([config.seed, self.step]).beta(config.mixup, config.mixup)
                )
                partner = torch.randperm(batch, device=self.device, generator=generator)
                features = lam * features + (1.0 - lam) * features[partner]
            features = features.unsqueeze(1)
        autocast = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"
        )
        with autocast:
            output = self.forward(features)
        target = self.targets[index]
        loss = F.cross_entropy(
            output.logits.float(),
            target,
            weight=self.class_weights,
            label_smoothing=config.label_smoothing,
        )
        if config.mixup > 0:
            loss = lam * loss + (1.0 - lam) * F.cross_entropy(
                output.logits.float(),
                target[partner],
                weight=self.class_weights,
                label_smoothing=config.label_smoothing,
            )
        if self.teacher_probs is not None:
            soft = self.teacher_probs[index]
            if config.mixup > 0:
                soft = lam * soft + (1.0 - lam) * soft[partner]
            temperature = config.distill_temperature
            student = F.log_softmax(output.logits.float() / temperature, dim=1)
            # T^2 keeps the soft term's gradient scale independent of T (Hinton et al.).
            distill = F.kl_div(student, soft, reduction="batchmean") * temperature**2
            weight = config.distill_weight
            loss = (1.0 - weight) * loss + weight * distill
        if self.center_loss is not None:
            loss = loss + config.center_loss_weight * self.center_loss(
                output.embedding.float(), target
            )
        if self.speaker_head is not None:
            speaker = self.speaker_ids[index]
            guess, confusion = speaker_confusion(self.speaker_head, output.embedding.float())
            head_loss = F.cross_entropy(guess, speaker)
            if config.mixup > 0:
                head_loss = lam * head_loss + (1.0 - lam) * F.cross_entropy(guess, speaker[partner])
            progress = self.step / max(1, self.total_steps)
            strength = config.speaker_adversarial * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1)
            loss = loss + head_loss + strength * confusion
        if output.reconstruction is not None and config.reconstruction_weight > 0:
            wanted = self.model.input_norm(features)
            loss = loss + config.reconstruction_weight * F.mse_loss(
                output.reconstruction.float(), wanted
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.speaker_head is not None and self.env.active:  # outside DDP: averaged here
            for parameter in self.speaker_head.parameters():
                if parameter.grad is not None:
                    self.env.sum_(parameter.grad).div_(self.env.world)
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.step)
        if self.center_loss is not None and self.env.active:
            centers = self.center_loss.centers
            centers.copy_(self.env.sum_(centers.clone()) / self.env.world)
        self.step += 1
        return loss, output.logits

    def _learning_rate(self) -> float:
        config, step = self.config, self.step
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        if config.schedule == "constant":
            return config.lr
        span = max(1, self.total_steps - config.warmup_steps)
        progress = min(1.0, (step - config.warmup_steps) / span)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _validate(self) -> Report:
        assert self.val_set is not None  # called only with one
        logits = dataset_logits(
            self.output_model,
            self.val_set,
            batch_size=max(self.batch, 64),
            device=self.device,
            clip_seconds=self.config.eval_clip_seconds,
            speaker_audio=self.val_speaker_audio,
        )
        labels, targets = targets_for(self.output_model, self.val_set)
        return Report.from_predictions(targets, logits.argmax(dim=1), labels)

    def _diverged_message(self, epoch: int, step: int) -> str:
        kept = checkpoint.epoch_dirs(self.run) if self.run is not None else []
        where = f"; the last good checkpoint is {kept[-1]}" if kept else ""
        return (
            f"the loss became NaN or infinite in epoch {epoch} (by step {step + 1}); "
            f"training stopped{where}. Lower TrainConfig.lr (now {self.config.lr}), keep "
            "grad_clip on, or check the data for NaN/Inf samples"
        )

    # --------------------------------------------------------------------- checkpoints
    def _epoch_dir(self, epoch: int) -> Path:
        assert self.run is not None  # called only when saving
        return self.run / checkpoint.CHECKPOINTS / f"epoch-{epoch:04d}"

    def _save(self, epoch: int) -> None:
        if self.run is None:
            return
        meta = {
            **checkpoint.model_card(self.output_model, self.config.model),
            "train_config": self.config.to_dict(),
            "epoch": epoch,
            "global_step": self.step,
            "train_size": self.train_size,
            **self.data_fingerprints,
            "best_epoch": self.best_epoch,
            "best_val_ua": self.best_ua if self.best_epoch is not None else None,
            "metrics": self.history[-1],
            "history": self.history,
        }
        state = {
            "optimizer": self.optimizer.state_dict(),
            "center_loss": self.center_loss.state_dict() if self.center_loss else None,
            "speaker_head": self.speaker_head.state_dict() if self.speaker_head else None,
            "step": self.step,
            # model.safetensors holds the average; the optimised weights resume from here.
            "optimised_model": self.model.state_dict() if self.ema is not None else None,
        }
        target = self._epoch_dir(epoch)
        try:
            checkpoint.save(target, self.output_model, meta, state)
        except OSError as error:
            kept = checkpoint.epoch_dirs(self.run)
            previous = f"the previous checkpoint {kept[-1]} is intact" if kept else "none kept"
            raise OSError(
                error.errno, f"cannot write checkpoint {target} ({error.strerror}); {previous}"
            ) from error
        keep = {target, self._epoch_dir(self.best_epoch) if self.best_epoch else target}
        for old in checkpoint.epoch_dirs(self.run):
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)
        atomic_write(self.run / "history.csv", _csv(self.history))

    def _restore(self, resume: bool) -> int:
        """Load the last complete checkpoint; returns the epochs it had done."""
        if self.run is None:
            if resume:
                raise ValueError("resume=True needs out_dir (where the checkpoints are)")
            return 0
        if self.env.main:
            checkpoint.remove_partial(self.run)  # an earlier run killed while saving
        self.env.barrier()
        epochs = checkpoint.epoch_dirs(self.run)
        if not epochs:
            return 0
        last = epochs[-1]
        if not resume:
            raise ValueError(
                f"out_dir={str(self.run)!r} already holds a training run (checkpoint {last.name}):"
                " pass resume=True to continue it, or choose another folder"
            )
        meta = checkpoint.read_meta(last)
        _check_compatible(meta, self.config, self.labels, last)
        for key, now in self.data_fingerprints.items():
            # Checkpoints from before the fingerprints have none: nothing to compare.
            if key in meta and meta[key] != now:
                data = "train_set" if key == "train_data" else "val_set"
                raise ValueError(
                    f"cannot resume from {last}: it was trained with another {data} (other "
                    f"files, labels, speakers or lengths: fingerprint {meta[key]}, now {now}). "
                    "Resume with the same data, or use a new out_dir"
                )
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(last / checkpoint.MODEL_FILE)))
        self.model.to(self.device)
        state = torch.load(
            last / checkpoint.STATE_FILE, map_location=self.device, weights_only=True
        )
        if self.config.ema_decay > 0:  # model.safetensors held the average
            self.ema = WeightAverage(self.model, self.config.ema_decay)
            self.model.load_state_dict(state["optimised_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.center_loss is not None and state["center_loss"] is not None:
            self.center_loss.load_state_dict(state["center_loss"])
        if self.speaker_head is not None:
            self.speaker_head.load_state_dict(state["speaker_head"])
        self.step = int(state["step"])
        self.history = list(meta["history"])
        self.best_epoch = meta["best_epoch"]
        self.best_ua = meta["best_val_ua"] if meta["best_val_ua"] is not None else -math.inf
        return int(meta["epoch"])


def _check_compatible(meta: dict, config: TrainConfig, labels: tuple[str, ...], where: Path):
    differences = config.differences(meta.get("train_config", {}), ignore=_RESUMABLE_CHANGES)
    if list(meta.get("labels") or []) != list(labels):
        differences.append(f"labels: checkpoint {meta.get('labels')}, now {list(labels)}")
    if differences:
        raise ValueError(
            f"cannot resume from {where}: it was written with a different config ("
            + "; ".join(differences)
            + "). Use the same settings, or a new out_dir"
        )


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def _csv(history: list[dict[str, Any]]) -> bytes:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue().encode()


def _summary_line(row: dict[str, Any], epochs: int) -> str:
    line = (
        f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}, "
        f"train acc {100 * row['train_acc']:.1f} %, {row['clips_per_s']:.0f} clips/s"
    )
    if "val_ua" in row:
        line += f", val UA {100 * row['val_ua']:.1f} % WA {100 * row['val_wa']:.1f} %"
    return line
