"""Cross-validation studies: one model per fold, per-fold and pooled metrics, resumable.

A study folder holds ``study.json`` (the exact config, corpus, protocol), one
``fold-NN/`` per fold (``run/``: the fold's training run; ``report/``: its test report;
``predictions.json``), and at the end ``pooled/`` (the report over every fold's
predictions) with ``summary.json`` / ``summary.md`` (mean ± std over folds). A killed study
rerun with the same arguments skips finished folds and resumes the fold it was in from that
fold's last checkpoint. :func:`ensemble_studies` scores the mean softmax of several finished
studies of the same folds (a seed ensemble) and writes the same files, without ``run/``.
A study with ``teachers`` distils, fold by fold, from the fold models of finished studies of
the same folds (e.g. an ensemble's members) into one model per fold.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from emohrnet_fast._files import atomic_write
from emohrnet_fast._info import device_name, resolve_device
from emohrnet_fast.calibration import (
    Calibration,
    assess,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from emohrnet_fast.checkpoint import load_model
from emohrnet_fast.config import TrainConfig
from emohrnet_fast.data.corpus import Corpus
from emohrnet_fast.data.labels import column_order
from emohrnet_fast.data.splits import Protocol, Split, splits
from emohrnet_fast.evaluate import Report, dataset_logits, shared_speaker_audio, targets_for
from emohrnet_fast.train import check_distillation, is_main_process, process_group, train

_METRICS = ("wa", "ua", "macro_f1")


@dataclass
class CVResult:
    """What :func:`cross_validate` returns."""

    protocol: str  # "loso", "speaker_kfold", "session" or "random"
    speaker_independent: bool  # False for "random" (speakers on both sides)
    folds: list[Report]  # test report of each fold run, in fold order
    pooled: Report  # one report over every fold's test predictions
    mean: dict[str, float]  # WA / UA / macro-F1 averaged over folds
    std: dict[str, float]  # their sample standard deviation (0 with one fold)
    out_dir: Path | None
    # Cross-fitted temperature scaling (None with one fold, or folds with different label
    # sets): fold k's temperature is fitted on the other folds' test logits and measured on
    # fold k's, so no figure is measured on the data that fitted it.
    fold_calibration: list[Calibration] | None = None
    # Pooled over folds: ECE/NLL before and after each fold's cross-fitted temperature; its
    # ``temperature`` is fitted on every fold's test logits (the one to give a model trained
    # with this recipe).
    calibration: Calibration | None = None
    # TrainConfig.speaker_norm: every test speaker's features were standardised with that
    # speaker's own statistics, taken from its (unlabelled) test audio, or from its training
    # audio where it also trained (speaker-dependent protocols).
    speaker_normalised: bool = False
    # From ensemble_studies: each member study's own result on the ensemble's folds.
    members: list[CVResult] | None = None
    # On each member: its training settings that differ from the first member's ("seed=1").
    differences: list[str] | None = None

    def markdown(self) -> str:
        """Per-fold rows, then mean ± std and the pooled figures (and, for an ensemble, each
        member's)."""
        kind = "speaker-independent" if self.speaker_independent else "speaker-DEPENDENT"
        if self.speaker_normalised and self.speaker_independent:
            kind += ", speaker-normalised with each test speaker's unlabelled audio"
        elif self.speaker_normalised:  # every test speaker also trained: those statistics
            kind += ", speaker-normalised with each speaker's training audio"
        what = f"{len(self.folds)} fold(s)"
        if self.members:
            what += f", ensemble of {len(self.members)} studies (mean softmax)"
        lines = [
            f"{self.protocol} ({kind}), {what}",
            "",
            "| fold | test | n | WA % | UA % | macro-F1 % |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for report in self.folds:
            held = ", ".join(report.meta.get("test_groups", [])) or "-"
            lines.append(
                f"| {report.meta.get('fold')} | {held} | {sum(report.support)} | "
                f"{100 * report.wa:.1f} | {100 * report.ua:.1f} | {100 * report.macro_f1:.1f} |"
            )
        m, s = self.mean, self.std
        lines += [
            "",
            f"mean ± std over folds: WA {100 * m['wa']:.1f} ± {100 * s['wa']:.1f} %, "
            f"UA {100 * m['ua']:.1f} ± {100 * s['ua']:.1f} %, "
            f"macro-F1 {100 * m['macro_f1']:.1f} ± {100 * s['macro_f1']:.1f} %",
            f"pooled over {sum(self.pooled.support)} test utterances: "
            f"WA {100 * self.pooled.wa:.1f} %, UA {100 * self.pooled.ua:.1f} %, "
            f"macro-F1 {100 * self.pooled.macro_f1:.1f} %",
        ]
        if self.calibration is not None:
            c = self.calibration
            lines.append(
                f"calibration (temperature fitted on the other folds' test utterances): "
                f"ECE {100 * c.ece_before:.1f} % -> {100 * c.ece_after:.1f} %, NLL "
                f"{c.nll_before:.3f} -> {c.nll_after:.3f}; temperature over all folds "
                f"{c.temperature:.3f}"
            )
        lines += _provenance_lines([r.meta for r in self.folds])
        if self.members:
            lines += [
                "",
                "| member | differs in | UA % (mean ± std) | WA % | pooled UA / WA % |",
                "|---|---|---:|---:|---:|",
            ]
            for member in self.members:
                m, s, p = member.mean, member.std, member.pooled
                differs = ", ".join(member.differences or []) or "-"
                lines.append(
                    f"| {member.out_dir} | {differs} | {100 * m['ua']:.1f} ± {100 * s['ua']:.1f} "
                    f"| {100 * m['wa']:.1f} | {100 * p.ua:.1f} / {100 * p.wa:.1f} |"
                )
        return "\n".join(lines) + "\n"


def cross_validate(
    config: TrainConfig,
    corpus: Corpus,
    protocol: Protocol = "loso",
    *,
    k: int = 5,
    split_seed: int = 0,
    folds: list[int] | None = None,
    teachers: Sequence[str | os.PathLike] = (),
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool | None = None,
    quiet: bool = False,
) -> CVResult:
    """Train and test one model per fold of ``protocol`` over ``corpus``.

    Args:
        config: training settings, the same for every fold (no validation set: each fold's
            last epoch is tested, so the test speakers never choose anything).
        corpus: a corpus with waveforms loaded.
        protocol: ``"loso"`` (default), ``"speaker_kfold"``, ``"session"`` or ``"random"``
            (speaker-dependent, labelled so in every output); see
            :func:`emohrnet_fast.data.splits`.
        k: folds for ``speaker_kfold`` and ``random``.
        split_seed: seed of the fold assignment (``speaker_kfold``, ``random``).
        folds: run only these fold numbers (0-based), e.g. for a quick partial study; the
            summary then covers those folds only and says so.
        teachers: finished study folders of the same corpus and protocol (and ``k`` and
            split seed for ``speaker_kfold`` and ``random``) to distil from (needs
            ``config.distill_weight > 0``): fold k's model learns from
            the mean softened softmax of the teachers' fold-k models, which never heard fold
            k's test utterances, so the figures stay those of the protocol. Each teacher must
            have finished every fold run here.
        out_dir: study folder (see the module docstring); ``None``: nothing is written and
            nothing can be resumed.
        resume: reuse finished folds and resume an interrupted one found in ``out_dir``.
        progress, quiet: as for :func:`emohrnet_fast.train`.

    Returns:
        A :class:`CVResult`.

    Raises:
        ValueError: an impossible protocol for the corpus, unknown fold numbers, an
            ``out_dir`` holding a study with different settings (the message names them), or
            teachers that are not finished studies of the same folds (or without
            ``distill_weight``).
    """
    corpus.loaded_waveforms("corpus")
    all_folds = splits(corpus, protocol, k=k, seed=split_seed)
    chosen = list(range(len(all_folds))) if folds is None else sorted(set(folds))
    bad = [
        f
        for f in chosen
        if isinstance(f, bool) or not (isinstance(f, int) and 0 <= f < len(all_folds))
    ]
    if bad or not chosen:
        raise ValueError(
            f"folds={bad or folds}: expected None or a non-empty list of fold numbers; "
            f"{protocol} on {corpus.name} has folds 0..{len(all_folds) - 1}"
        )
    for number in chosen:  # before any training, not after the fold that cannot be scored
        _check_fold_labels(corpus, all_folds[number])
    teacher_folders = [Path(t) for t in teachers]
    check_distillation(len(teacher_folders), config)
    for folder in teacher_folders:
        _check_teacher(folder, corpus, protocol, k, split_seed, [all_folds[f] for f in chosen])
    out = Path(out_dir) if out_dir is not None else None
    study = {
        "corpus": corpus.name,
        "root": str(corpus.root),
        "utterances": len(corpus),
        "labels": list(corpus.labels),
        "protocol": protocol,
        "k": k,
        "split_seed": split_seed,
        "folds": chosen,
        "train_config": config.to_dict(),
    }
    if teacher_folders:
        study["teachers"] = [str(f.resolve()) for f in teacher_folders]
    # Under torchrun every rank trains each fold (DDP) and scores its test set; rank 0 alone
    # checks and writes the study folder and prints (the others read it to resume).
    main = is_main_process()
    quiet = quiet or not main
    if out is not None and main:
        _start_study(out, study, config, resume)
    reports, held_out = [], []
    with process_group(resolve_device(config.device, "TrainConfig.device")) as device:
        for number in chosen:
            split = all_folds[number]
            if not quiet:
                print(f"{split}", file=sys.stderr, flush=True)
            report, logits, targets = _run_fold(
                config, corpus, split, out, resume, progress, quiet, teacher_folders, device, main
            )
            reports.append(report)
            held_out.append((logits, targets))
    result = _result(
        protocol,
        all_folds[0].speaker_independent,
        reports,
        held_out,
        corpus.labels,
        out,
        speaker_normalised=config.speaker_norm,
    )
    if out is not None and main:
        partial = "" if len(chosen) == len(all_folds) else f" (folds {chosen} only)"
        _write_summary(out, f"# {corpus.name}: {config.model}{partial}", study, result)
    return result


def ensemble_studies(
    studies: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None
) -> CVResult:
    """Score the average of several finished :func:`cross_validate` studies' models.

    Fold k's ensemble predicts, for each test utterance, the class with the highest mean
    softmax probability over the members' fold-k models (read from each study's
    ``fold-NN/predictions.json``; nothing is retrained or re-run). The usual use is a seed
    ensemble: the same recipe run with ``seed=0, 1, ...`` into separate folders (on separate
    GPUs if you have them). Members may differ in any training setting; ``study.json`` and
    ``summary.json`` record each member's training config and the settings in which it differs
    from the first member (``"seed=1"``) beside its figures, and the markdown names them.

    Args:
        studies: two or more study folders (``cross_validate``'s ``out_dir``) of the same
            corpus, protocol and speaker normalisation (and the same ``k`` and split seed
            for ``speaker_kfold`` and ``random``, whose folds they choose).
        out_dir: where to write the ensemble's per-fold reports and predictions (with the
            ensemble's logits, ``log`` of the mean probabilities), ``pooled/`` and
            ``summary.md`` / ``summary.json``; ``None``: nothing is written.

    Returns:
        A :class:`CVResult` of the ensemble over the folds that every member finished;
        :attr:`CVResult.members` holds each member's own result on those folds, so the
        ensemble's gain over its members is measured on the same utterances.

    Raises:
        ValueError: fewer than two studies, a folder that is not a study, members that differ
            in the settings above or in a fold's test utterances, or no fold finished by all.
    """
    folders = [Path(s) for s in studies]
    if len(folders) < 2:
        raise ValueError(f"studies: an ensemble needs at least two studies, got {len(folders)}")
    if out_dir is not None and Path(out_dir).resolve() in {f.resolve() for f in folders}:
        raise ValueError(f"out_dir={str(out_dir)!r} is a member study: it would be overwritten")
    infos = [_study_info(f) for f in folders]
    first = infos[0]
    for folder, info in zip(folders[1:], infos[1:], strict=True):
        differences = [
            f"{key}: {first[key]!r} in {folders[0]}, {info[key]!r} in {folder}"
            for key in (*_fold_settings(first["protocol"]), "speaker_norm")
            if info[key] != first[key]
        ]
        if differences:
            raise ValueError(
                "studies: members of an ensemble must agree (" + "; ".join(differences) + ")"
            )
    finished = [_finished_folds(f) for f in folders]
    common = sorted(set.intersection(*(set(n) for n in finished)))
    if not common:
        raise ValueError(
            "studies: no fold is finished in every study ("
            + "; ".join(f"{f}: {sorted(n)}" for f, n in zip(folders, finished, strict=True))
            + ")"
        )
    members_held: list[list[tuple[Tensor, Tensor]]] = [[] for _ in folders]
    member_reports: list[list[Report]] = [[] for _ in folders]
    reports, held_out = [], []
    for fold in common:
        saved = [predictions[fold] for predictions in finished]
        metas = [_fold_meta(f, fold) for f in folders]
        for i, (folder, one) in enumerate(zip(folders, saved, strict=True)):
            _check_same_test_set(
                fold, folders[0], saved[0], first["root"], folder, one, infos[i]["root"]
            )
            report, logits, targets = _fold_result(one, metas[i])
            member_reports[i].append(report)
            members_held[i].append((logits, targets))
        combined = _mean_probabilities(saved)
        # The members' own records of where they ran stay in theirs.
        shared = {key: value for key, value in metas[0].items() if key != "ran"}
        meta = {**shared, "ensemble_of": [str(f) for f in folders]}
        report, logits, targets = _fold_result(combined, meta)
        reports.append(report)
        held_out.append((logits, targets))
        if out_dir is not None:
            folder = Path(out_dir) / f"fold-{fold:02d}"
            report.save(folder / "report")
            atomic_write(folder / "predictions.json", json.dumps(combined).encode())
    labels, protocol = tuple(first["labels"]), first["protocol"]
    independent = reports[0].meta["speaker_independent"]
    members = [
        _result(
            protocol,
            independent,
            member_reports[i],
            members_held[i],
            labels,
            folder,
            first["speaker_norm"],
        )
        for i, folder in enumerate(folders)
    ]
    for member, info in zip(members, infos, strict=True):
        member.differences = _config_differences(first["train_config"], info["train_config"])
    out = Path(out_dir) if out_dir is not None else None
    result = _result(protocol, independent, reports, held_out, labels, out, first["speaker_norm"])
    result.members = members
    if out is not None:
        study = {key: first[key] for key in ("corpus", "utterances", "labels", *_SAME_IN_ENSEMBLES)}
        study["folds"] = common
        study["ensemble_of"] = [
            {
                "study": str(folder),
                "differs_from_first": member.differences,
                "train_config": info["train_config"],
                "mean": member.mean,
                "pooled": {m: getattr(member.pooled, m) for m in _METRICS},
            }
            for folder, info, member in zip(folders, infos, members, strict=True)
        ]
        atomic_write(out / "study.json", json.dumps(study, indent=2).encode())
        header = f"# {first['corpus']}: ensemble of {len(folders)} studies (folds {common})"
        _write_summary(out, header, study, result)
    return result


def _config_differences(first: dict, other: dict) -> list[str]:
    """``"field=value"`` for each training setting of ``other`` (a TrainConfig dict) that
    differs from ``first``'s, fields missing from an older study counting as defaults."""
    defaults = TrainConfig().to_dict()
    first, other = {**defaults, **first}, {**defaults, **other}
    return [f"{key}={value!r}" for key, value in other.items() if first[key] != value]


# Settings that make two studies' folds the same test sets (for an ensemble also speaker
# normalisation, which changes what a fold's test figure means; a teacher's may differ).
_SAME_IN_ENSEMBLES = ("corpus", "protocol", "k", "split_seed")
# The protocols whose folds k and the split seed choose (loso and session ignore both).
_SEEDED_PROTOCOLS = ("speaker_kfold", "random")


def _fold_settings(protocol: str) -> tuple[str, ...]:
    """Which of :data:`_SAME_IN_ENSEMBLES` decide ``protocol``'s folds."""
    if protocol in _SEEDED_PROTOCOLS:
        return _SAME_IN_ENSEMBLES
    return tuple(key for key in _SAME_IN_ENSEMBLES if key not in ("k", "split_seed"))


def _study_info(folder: Path, role: str = "studies") -> dict:
    file = folder / "study.json"
    if not file.is_file():
        raise ValueError(f"{role}: {folder} holds no study.json (not a cross_validate out_dir)")
    study = json.loads(file.read_text())
    if "ensemble_of" in study:
        raise ValueError(f"{role}: {folder} is itself an ensemble; list its member studies")
    config = study.get("train_config", {})
    return {**study, "speaker_norm": bool(config.get("speaker_norm", False))}


def _check_teacher(
    folder: Path, corpus: Corpus, protocol: str, k: int, split_seed: int, folds: list[Split]
) -> None:
    """``folder`` is a study of these folds that finished each of them (so its fold models
    never heard the fold's test utterances)."""
    info = _study_info(folder, "teachers")
    ours = dict(zip(_SAME_IN_ENSEMBLES, (corpus.name, protocol, k, split_seed), strict=True))
    differences = [
        f"{key}: {info.get(key)!r} there, {value!r} here"
        for key, value in ours.items()
        if key in _fold_settings(protocol) and info.get(key) != value
    ]
    if differences:
        raise ValueError(
            f"teachers: {folder} is a study of other folds (" + "; ".join(differences) + ")"
        )
    finished = _finished_folds(folder)
    missing = [split.fold for split in folds if split.fold not in finished]
    if missing:
        raise ValueError(f"teachers: {folder} has not finished fold(s) {missing}")
    for split in folds:
        test_set = corpus.subset(split.test)
        here = {
            "files": [str(u.path) for u in test_set.utterances],
            "true": [u.label for u in test_set.utterances],
        }
        _check_same_test_set(
            split.fold,
            Path("this study"),
            here,
            str(corpus.root),
            folder,
            finished[split.fold],
            info["root"],
            role="teachers",
        )


def _finished_folds(folder: Path) -> dict[int, dict]:
    """The ``predictions.json`` content of each fold whose file holds test logits, by fold."""
    finished = {}
    for file in folder.glob("fold-*/predictions.json"):
        saved = json.loads(file.read_text())
        if "logits" in saved:
            finished[int(file.parent.name.removeprefix("fold-"))] = saved
    return finished


def _fold_meta(folder: Path, fold: int) -> dict:
    """The fold report's meta (written before the fold's ``predictions.json``)."""
    return json.loads((folder / f"fold-{fold:02d}" / "report" / "report.json").read_text())["meta"]


def _check_same_test_set(
    fold: int,
    first: Path,
    a: dict,
    a_root: str,
    other: Path,
    b: dict,
    b_root: str,
    role: str = "studies",
) -> None:
    """The two studies' fold ``fold`` tested the same utterances in the same order (paths
    compared relative to each study's corpus root, so a moved corpus still matches)."""

    def names(saved: dict, root: str) -> list[str]:
        return [os.path.relpath(f, root) for f in saved["files"]]

    if names(a, a_root) != names(b, b_root) or a["true"] != b["true"]:
        raise ValueError(
            f"{role}: fold {fold} of {other} tested other utterances than fold {fold} of "
            f"{first} (a different corpus copy or split?)"
        )


def _mean_probabilities(saved: list[dict]) -> dict:
    """A ``predictions.json`` content for the members' mean softmax (columns in the first
    member's label order); its logits are the log of the mean, so a softmax of them gives
    the mean back."""
    labels = saved[0]["labels"]
    total = torch.zeros(len(saved[0]["true"]), len(labels), dtype=torch.float64)
    for one in saved:
        order = column_order(
            one["labels"],
            labels,
            f"studies: a fold's models know different classes ({labels} and {one['labels']})",
        )
        logits = torch.tensor(one["logits"], dtype=torch.float64)[:, order]
        probabilities = torch.softmax(logits, dim=1)
        total = total + probabilities
    mean = total / len(saved)
    return {
        **{key: saved[0][key] for key in ("labels", "files", "true")},
        "pred": [labels[i] for i in mean.argmax(dim=1).tolist()],
        "logits": [[round(x, 5) for x in row] for row in mean.log().tolist()],
    }


def _result(
    protocol: str,
    speaker_independent: bool,
    reports: list[Report],
    held_out: list[tuple[Tensor, Tensor]],
    labels: tuple[str, ...],
    out: Path | None,
    speaker_normalised: bool,
) -> CVResult:
    """Pooled, mean ± std and cross-fitted calibration of per-fold test results."""
    fold_calibration, calibration = _cross_fit(reports, held_out)
    return CVResult(
        protocol=protocol,
        speaker_independent=speaker_independent,
        folds=reports,
        pooled=_pooled(reports, labels, protocol),
        mean={m: statistics.fmean(getattr(r, m) for r in reports) for m in _METRICS},
        std={
            m: statistics.stdev(getattr(r, m) for r in reports) if len(reports) > 1 else 0.0
            for m in _METRICS
        },
        out_dir=out,
        fold_calibration=fold_calibration,
        calibration=calibration,
        speaker_normalised=speaker_normalised,
    )


def _write_summary(out: Path, header: str, study: dict, result: CVResult) -> None:
    """``pooled/``, ``summary.md`` and ``summary.json`` of a finished study or ensemble."""
    result.pooled.save(out / "pooled")
    atomic_write(out / "summary.md", (header + "\n\n" + result.markdown()).encode())
    summary = {**study, "mean": result.mean, "std": result.std}
    summary["pooled"] = {m: getattr(result.pooled, m) for m in _METRICS}
    summary["per_fold"] = [{**r.meta, **{m: getattr(r, m) for m in _METRICS}} for r in result.folds]
    if result.calibration is not None:
        summary["calibration"] = {
            "pooled": asdict(result.calibration),
            "per_fold": [asdict(c) for c in result.fold_calibration or ()],
        }
    atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())


def _check_fold_labels(corpus: Corpus, split: Split) -> None:
    trained = {corpus.utterances[i].label for i in split.train.tolist()}
    unseen = sorted({corpus.utterances[i].label for i in split.test.tolist()} - trained)
    if unseen:
        raise ValueError(
            f"fold {split.fold} ({split}): its test set has labels its training set lacks: "
            f"{unseen}. Choose other folds or protocol, or leave those utterances out"
        )


def _start_study(out: Path, study: dict, config: TrainConfig, resume: bool) -> None:
    file = out / "study.json"
    if file.exists():
        saved = json.loads(file.read_text())
        if not resume:
            raise ValueError(
                f"out_dir={str(out)!r} already holds a study: pass resume=True to continue it, "
                "or choose another folder"
            )
        differences = [
            f"{key}: saved {saved.get(key)!r}, now {value!r}"
            for key, value in study.items()
            if key not in ("root", "folds", "train_config") and saved.get(key) != value
        ]
        differences += config.differences(saved.get("train_config", {}))
        if differences:
            raise ValueError(
                f"cannot resume the study in {out}: different settings ("
                + "; ".join(differences)
                + ")"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(file, json.dumps(study, indent=2).encode())


def _run_fold(
    config: TrainConfig,
    corpus: Corpus,
    split: Split,
    out: Path | None,
    resume: bool,
    progress: bool | None,
    quiet: bool,
    teacher_folders: list[Path],
    device: torch.device,
    write: bool,
) -> tuple[Report, Tensor, Tensor]:
    """The fold's test report, its ``(n, classes)`` test logits and ``(n,)`` targets; with
    ``write``, also saved in the fold's folder. ``device``: where the teachers score."""
    meta = {
        "protocol": split.protocol,
        "fold": split.fold,
        "test_groups": list(split.test_groups),
        "speaker_independent": split.speaker_independent,
        "speaker_normalised": config.speaker_norm,
    }
    folder = out / f"fold-{split.fold:02d}" if out is not None else None
    saved_file = folder / "predictions.json" if folder is not None else None
    test_set = corpus.subset(split.test)
    if saved_file is not None and resume and saved_file.exists():
        saved = json.loads(saved_file.read_text())
        # File names, not paths: a corpus moved to another folder still resumes.
        files = saved.get("files")
        if files is not None and [Path(f).name for f in files] != [
            u.path.name for u in test_set.utterances
        ]:
            raise ValueError(
                f"cannot resume the study: {saved_file} scored other test utterances than "
                f"fold {split.fold} of this corpus has ({len(files)} files, now "
                f"{len(test_set)}). Use the corpus the study ran on, or a new out_dir"
            )
        if "logits" in saved:
            return _fold_result(saved, meta)
        # Written before logits were saved: recompute them from the fold's final checkpoint.
        model = load_model(saved_file.parent / "run")
        ran = None
    else:
        run = f"fold-{split.fold:02d}/run"
        trained = train(
            config,
            corpus.subset(split.train),
            teachers=[load_model(folder / run, device) for folder in teacher_folders],
            out_dir=folder / "run" if folder is not None else None,
            resume=resume and folder is not None,
            progress=progress,
            quiet=quiet,
        )
        model = trained.model
        ran = _provenance(next(model.parameters()).device, trained.history)
    labels, _ = targets_for(model, test_set)  # a clear error for test labels it never trained on
    logits = dataset_logits(
        model,
        test_set,
        device=next(model.parameters()).device,
        clip_seconds=config.eval_clip_seconds,
        # Speaker normalisation: a test speaker who also trained keeps the training
        # statistics (speaker-dependent protocols); LOSO's test speakers use their own audio.
        speaker_audio=shared_speaker_audio(corpus, test_set, split.train.tolist())
        if config.speaker_norm
        else None,
    )
    saved = {
        "labels": list(labels),
        "files": [str(u.path) for u in test_set.utterances],
        "true": [u.label for u in test_set.utterances],
        "pred": [labels[i] for i in logits.argmax(dim=1).tolist()],
        "logits": [[round(x, 5) for x in row] for row in logits.tolist()],
    }
    if ran is not None:
        saved["ran"] = ran
    report, logits, targets = _fold_result(saved, meta)
    if saved_file is not None and write:
        report.save(saved_file.parent / "report")
        atomic_write(saved_file, json.dumps(saved).encode())
    return report, logits, targets


def _provenance(device: torch.device, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Where, when and with what a fold's model was trained: device, finishing time (UTC),
    training seconds summed over its epochs (a resumed run's earlier ones included) and the
    versions, so a study's figures carry the facts a report of them needs."""
    from emohrnet_fast import __version__

    return {
        "device": device_name(device),
        "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "train_seconds": round(sum(float(row.get("seconds", 0.0)) for row in history), 1),
        "torch": torch.__version__,
        "emohrnet_fast": __version__,
    }


def _provenance_lines(metas: list[dict[str, Any]]) -> list[str]:
    """One line on where and when the folds trained, from what they recorded (none for
    folds written before the record existed, or for an ensemble's combined folds)."""
    ran = [m["ran"] for m in metas if isinstance(m.get("ran"), dict)]
    if not ran:
        return []

    def values(key: str) -> str:
        return ", ".join(sorted({str(r.get(key)) for r in ran}))

    finished = sorted(str(r.get("finished_utc")) for r in ran)
    minutes = sum(float(r.get("train_seconds", 0.0)) for r in ran) / 60
    counted = "" if len(ran) == len(metas) else f" ({len(ran)} of {len(metas)} folds recorded)"
    return [
        f"trained on {values('device')} (torch {values('torch')}, emohrnet_fast "
        f"{values('emohrnet_fast')}): {minutes:.0f} min of training, folds finished "
        f"{finished[0]} to {finished[-1]} UTC{counted}"
    ]


def _fold_result(saved: dict, meta: dict) -> tuple[Report, Tensor, Tensor]:
    """Report, logits and targets of a fold's ``predictions.json`` content (the report's
    ECE is that of the plain softmax: the cross-fitted temperature comes later)."""
    if "ran" in saved:
        meta = {**meta, "ran": saved["ran"]}
    labels = saved["labels"]
    index = {name: i for i, name in enumerate(labels)}
    logits = torch.tensor(saved["logits"], dtype=torch.float32).reshape(-1, len(labels))
    targets = torch.tensor([index[t] for t in saved["true"]], dtype=torch.long)
    pred = [index[p] for p in saved["pred"]]
    report = Report.from_predictions(
        targets, pred, labels, meta, scores=torch.softmax(logits.double(), dim=1)
    )
    return report, logits, targets


def _cross_fit(
    reports: list[Report], held_out: list[tuple[Tensor, Tensor]]
) -> tuple[list[Calibration] | None, Calibration | None]:
    """Per-fold calibration with the temperature fitted on the other folds, and the pooled
    figures (see :class:`CVResult`)."""
    if len(reports) < 2 or len({r.labels for r in reports}) != 1:
        return None, None
    per_fold, scaled_folds = [], []
    for k, (logits, targets) in enumerate(held_out):
        others = [h for j, h in enumerate(held_out) if j != k]
        temperature = fit_temperature(
            torch.cat([o[0] for o in others]), torch.cat([o[1] for o in others])
        )
        per_fold.append(assess(logits, targets, temperature))
        scaled_folds.append(logits.double() / temperature)
    raw, scaled = torch.cat([h[0] for h in held_out]).double(), torch.cat(scaled_folds)
    targets = torch.cat([h[1] for h in held_out])
    pooled = Calibration(
        temperature=fit_temperature(raw, targets),
        ece_before=expected_calibration_error(torch.softmax(raw, dim=1), targets),
        ece_after=expected_calibration_error(torch.softmax(scaled, dim=1), targets),
        nll_before=negative_log_likelihood(raw, targets),
        nll_after=negative_log_likelihood(scaled, targets),
        utterances=int(targets.numel()),
    )
    return per_fold, pooled


def _pooled(reports: list[Report], labels: tuple[str, ...], protocol: str) -> Report:
    """One report over the folds' confusion matrices, on the corpus's label set."""
    index = {name: i for i, name in enumerate(labels)}
    true, pred = [], []
    for report in reports:
        for i, row in enumerate(report.confusion):
            for j, count in enumerate(row):
                true += [index[report.labels[i]]] * count
                pred += [index[report.labels[j]]] * count
    present = sorted(set(true) | set(pred))
    names = [labels[i] for i in present]
    remap = {old: new for new, old in enumerate(present)}
    meta = {"protocol": protocol, "folds": [r.meta.get("fold") for r in reports]}
    return Report.from_predictions([remap[t] for t in true], [remap[p] for p in pred], names, meta)
