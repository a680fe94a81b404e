"""Command line: ``emohrnet-fast <command>`` (also ``python -m emohrnet_fast``).

Errors print one line (``emohrnet-fast: error: ...``) and exit with status 1; ``--debug``
shows the traceback instead. A mistyped command line prints the usage and exits with status 2
(argparse), an interrupt (Ctrl-C) with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _info(args: argparse.Namespace) -> int:
    from emohrnet_fast import info
    from emohrnet_fast.checkpoint import CheckpointError
    from emohrnet_fast.infer import bundled_model_card, card_summary

    report = info()
    try:
        card = bundled_model_card()
        bundled = card_summary(card)
    except CheckpointError as error:
        card, bundled = {"error": str(error)}, f"unreadable ({error})"
    report["bundled_model"] = card
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    build = report["build"]
    cuda = (
        f"yes (sm {build['cuda_architectures']}, CUDA {build['cuda_toolkit']})"
        if build["cuda"]
        else "no"
    )
    print(
        f"emohrnet_fast {report['version']}  (torch {report['torch']}, Python {report['python']})"
    )
    print(f"CPU kernels:  {', '.join(report['kernels']['cpu'])}")
    print(f"CUDA kernels: {cuda}")
    print(f"devices:      {', '.join(report['devices'])}")
    print(f"bundled model: {bundled}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import torch

    from emohrnet_fast import bench
    from emohrnet_fast._info import device_name, resolve_device

    device = resolve_device(args.device, "--device")
    say = None if args.quiet else (lambda name: print(f"timing {name}", file=sys.stderr))
    rows = bench.run(
        device,
        batch=args.batch,
        clip_seconds=args.clip_seconds,
        repeat=args.repeat,
        model=not args.no_model,
        progress=say,
    )
    if args.json:
        report = {"device": device_name(device), "torch": torch.__version__}
        print(json.dumps({**report, "rows": [row.to_dict() for row in rows]}, indent=2))
    else:
        print(bench.markdown(rows, device), end="")
    return 0


def _corpus(args: argparse.Namespace, sample_rate: int):
    from emohrnet_fast.data import load_corpus

    options = {}
    for item in args.corpus_option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--corpus-option {item!r}: expected KEY=VALUE")
        options[key] = value
    corpus = load_corpus(
        args.corpus,
        args.root,
        sample_rate=sample_rate,
        cache_dir=args.cache_dir,
        progress=None if not args.quiet else False,
        **options,
    )
    from emohrnet_fast.train import is_main_process

    if not args.quiet and is_main_process():  # under torchrun, once
        print(corpus.summary(), file=sys.stderr)
    return corpus


def _frames_or_fraction(text: str) -> int | float:
    """--time-width: an integer is frames, a decimal a fraction of the clip's frames."""
    try:
        return int(text)
    except ValueError:
        return float(text)


# The training flags, one table for the parser, for _train_config and for export's
# reproducing command: TrainConfig (or SpecAugmentConfig) field -> (flag, argparse options).
# "--model" gets its choices (the registry's presets) when the parser is built.
_TRAIN_VALUE_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "model": ("--model", {"help": "model preset"}),
    "epochs": ("--epochs", {"type": int}),
    "batch_size": ("--batch-size", {"type": int}),
    "lr": ("--lr", {"type": float, "help": "peak learning rate"}),
    "optimizer": ("--optimizer", {"choices": ("adam", "adamw")}),
    "weight_decay": ("--weight-decay", {"type": float}),
    "label_smoothing": (
        "--label-smoothing",
        {"type": float, "help": "cross-entropy label smoothing"},
    ),
    "mixup": ("--mixup", {"type": float, "help": "mixup Beta concentration (0: off)"}),
    "speed_perturb": (
        "--speed-perturb",
        {
            "type": float,
            "metavar": "R",
            "help": "speed perturbation of training crops: rates uniform in [1-R, 1+R] (0: off)",
        },
    ),
    "ema_decay": (
        "--ema",
        {
            "type": float,
            "metavar": "DECAY",
            "help": "keep an exponential moving average of the weights with this decay "
            "(e.g. 0.999) and save, validate and return it (0: off)",
        },
    ),
    "distill_weight": (
        "--distill-weight",
        {
            "type": float,
            "metavar": "W",
            "help": "with --teacher: weight of the teachers' soft targets in the loss (0-1)",
        },
    ),
    "distill_temperature": (
        "--distill-temperature",
        {"type": float, "metavar": "T", "help": "softmax temperature of the distillation"},
    ),
    "speaker_adversarial": (
        "--speaker-adversarial",
        {
            "type": float,
            "metavar": "W",
            "help": "speaker-adversarial training: weight of the loss that leaves a speaker "
            "classifier on the embedding guessing uniformly (domain confusion; 0: off)",
        },
    ),
    "clip_seconds": (
        "--clip-seconds",
        {"type": float, "help": "training crop length (and validation window), s"},
    ),
    "seed": ("--seed", {"type": int}),
    "init_from": (
        "--init",
        {
            "metavar": "WEIGHTS",
            "help": "fine-tune: start from these weights, a checkpoint or run folder (e.g. "
            "trained on another corpus) or a state-dict file (.safetensors, .pt; e.g. timm's "
            "HRNet of the preset's widths), matched by name and shape",
        },
    ),
    "device": ("--device", {"help": "cpu, cuda, cuda:1 (default: CUDA when usable)"}),
    "precision": ("--precision", {"choices": ("fp32", "bf16")}),
    "compile_mode": (
        "--compile-mode",
        {
            "choices": ("default", "reduce-overhead"),
            "help": "with --compile: reduce-overhead also captures CUDA graphs",
        },
    ),
}
_TRAIN_SWITCH_HELP: dict[str, tuple[str, str]] = {
    "balance_classes": (
        "--balance-classes",
        "weight the cross-entropy by inverse class frequency (aims at UA, not WA)",
    ),
    "speaker_norm": (
        "--speaker-norm",
        "speaker normalisation: standardise each speaker's features with its own "
        "statistics (evaluation then uses each test speaker's unlabelled audio, or its "
        "training audio where it also trained)",
    ),
    "eval_whole": (
        "--eval-whole",
        "score validation and test utterances whole, as predict does, not in centred "
        "--clip-seconds windows (for training on shorter crops)",
    ),
    "compile": ("--compile", "torch.compile"),
}
_SPEC_AUGMENT_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "freq_masks": (
        "--freq-masks",
        {
            "type": int,
            "help": "SpecAugment frequency masks (mask flags left out keep "
            "SpecAugmentConfig's defaults)",
        },
    ),
    "freq_width": (
        "--freq-width",
        {"type": int, "help": "SpecAugment's widest frequency mask, bands"},
    ),
    "time_masks": ("--time-masks", {"type": int, "help": "SpecAugment time masks"}),
    "time_width": (
        "--time-width",
        {
            "type": _frames_or_fraction,
            "help": "SpecAugment's widest time mask: frames (e.g. 40) or a fraction of them "
            "(e.g. 0.15)",
        },
    ),
}
# FrontEndConfig fields a training command may change; the rest keep the model preset's.
_FRONTEND_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "sample_rate": (
        "--sample-rate",
        {"type": int, "metavar": "HZ", "help": "the corpus is decoded (resampled) to this rate"},
    ),
    "n_mels": (
        "--n-mels",
        {
            "type": int,
            "metavar": "N",
            "help": "Mel bands (SpecAugment's --freq-width counts these bands: 27 by default)",
        },
    ),
    "n_mfcc": ("--n-mfcc", {"type": int, "metavar": "N", "help": "MFCCs of the Mel bands"}),
}
TRAIN_VALUE_FLAGS = {field: flag for field, (flag, _) in _TRAIN_VALUE_OPTIONS.items()}
FRONTEND_FLAGS = {field: flag for field, (flag, _) in _FRONTEND_OPTIONS.items()}
TRAIN_SWITCHES = {field: flag for field, (flag, _) in _TRAIN_SWITCH_HELP.items()}
SPEC_AUGMENT_FLAGS = {field: flag for field, (flag, _) in _SPEC_AUGMENT_OPTIONS.items()}


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def _train_config(args: argparse.Namespace):
    from emohrnet_fast import SpecAugmentConfig, TrainConfig, models

    flags = {**TRAIN_VALUE_FLAGS, **TRAIN_SWITCHES}
    fields = {field: getattr(args, _dest(flag)) for field, flag in flags.items()}
    fields = {key: value for key, value in fields.items() if value is not None}
    masks = {field: getattr(args, _dest(flag)) for field, flag in SPEC_AUGMENT_FLAGS.items()}
    masks = {key: value for key, value in masks.items() if value is not None}
    if args.no_augment:
        fields["spec_augment"] = None
    elif masks:
        fields["spec_augment"] = SpecAugmentConfig(**masks)
    frontend = {field: getattr(args, _dest(flag)) for field, flag in FRONTEND_FLAGS.items()}
    frontend = {key: value for key, value in frontend.items() if value is not None}
    if frontend:
        model = fields.get("model", TrainConfig.model)
        fields["frontend"] = models.model_config(model).frontend.replace(**frontend)
    return TrainConfig(**fields)


def _split_by_speakers(corpus, speakers: str):
    wanted = {s.strip() for s in speakers.split(",") if s.strip()}
    unknown = sorted(wanted - set(corpus.speakers))
    if unknown:
        raise ValueError(
            f"speakers {unknown} are not in {corpus.name} "
            f"(its speakers: {', '.join(corpus.speakers)})"
        )
    held = [i for i, u in enumerate(corpus.utterances) if u.speaker in wanted]
    rest = [i for i, u in enumerate(corpus.utterances) if u.speaker not in wanted]
    return corpus.subset(rest), corpus.subset(held)


def _config_and_corpus(args: argparse.Namespace):
    """The TrainConfig from the flags and the corpus decoded at its front-end's rate."""
    from emohrnet_fast import models

    config = _train_config(args)
    frontend = config.frontend or models.model_config(config.model).frontend
    return config, _corpus(args, frontend.sample_rate)


def _train(args: argparse.Namespace) -> int:
    from emohrnet_fast import load_model, train
    from emohrnet_fast._info import resolve_device
    from emohrnet_fast.train import is_main_process

    config, corpus = _config_and_corpus(args)
    train_set, val_set = corpus, None
    if args.val_speakers:
        train_set, val_set = _split_by_speakers(corpus, args.val_speakers)
    result = train(
        config,
        train_set,
        val_set,
        teachers=[load_model(t, device=resolve_device(config.device)) for t in args.teacher],
        out_dir=args.out,
        resume=args.resume,
        progress=False if args.quiet else None,
        quiet=args.quiet,
    )
    if not is_main_process():  # rank 0 of a torchrun prints for all
        return 0
    best = result.best_checkpoint or result.last_checkpoint
    print(f"checkpoint: {best}")
    if result.val_report is not None:
        print(result.val_report.markdown(), end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from emohrnet_fast import evaluate, load_model
    from emohrnet_fast._info import resolve_device

    device = resolve_device(args.device, "--device")
    models = [load_model(checkpoint, device=device) for checkpoint in args.checkpoint]
    corpus = _corpus(args, models[0].default_frontend.sample_rate)
    if args.speakers:
        _, corpus = _split_by_speakers(corpus, args.speakers)
    checkpoints = [str(c) for c in args.checkpoint]
    report = evaluate(
        models,
        corpus,
        clip_seconds=args.clip_seconds,
        meta={
            "checkpoint": checkpoints if len(models) > 1 else checkpoints[0],
            "speakers": args.speakers or "all",
        },
    )
    if args.out:
        report.save(args.out)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2, default=str))
    else:
        print(report.markdown(), end="")
    return 0


def _cv(args: argparse.Namespace) -> int:
    from emohrnet_fast import cross_validate
    from emohrnet_fast.train import is_main_process

    config, corpus = _config_and_corpus(args)
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    if args.out is None and not args.quiet and is_main_process():
        print(
            "emohrnet-fast cv: no --out, so nothing is saved (no reports, no checkpoints) "
            "and a stopped study cannot resume",
            file=sys.stderr,
        )
    result = cross_validate(
        config,
        corpus,
        args.protocol,
        k=args.k,
        split_seed=args.split_seed,
        folds=folds,
        teachers=args.teacher,
        out_dir=args.out,
        resume=True,
        progress=False if args.quiet else None,
        quiet=args.quiet,
    )
    if is_main_process():  # rank 0 of a torchrun prints for all
        print(result.markdown(), end="")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from emohrnet_fast.crossval import ensemble_studies

    print(ensemble_studies(args.studies, out_dir=args.out).markdown(), end="")
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _predictor(args: argparse.Namespace):
    from emohrnet_fast.ensemble import EnsemblePredictor
    from emohrnet_fast.infer import Predictor

    models = args.model or ["default"]
    options = {"device": args.device, "precision": args.precision, "compile": args.compile}
    predictor: Predictor | EnsemblePredictor
    if len(models) == 1:
        predictor = Predictor(models[0], **options)
    else:
        predictor = EnsemblePredictor(models, **options)
    if args.speaker_audio:
        predictor.adapt(args.speaker_audio)
    return predictor


def _ranking(predictions: list[dict]) -> str:
    return "  ".join(f"{p['label']} {p['score']:.3f}" for p in predictions)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _predict(args: argparse.Namespace) -> int:
    from emohrnet_fast import audio

    predictor = _predictor(args)
    waveforms, errors = {}, {}
    for i, name in enumerate(args.files):  # decode one by one: a bad file fails alone
        try:
            waveforms[i] = audio.load(name, predictor.sample_rate, mono=True)[0]
        except (OSError, ValueError, TypeError) as error:
            errors[i] = _one_line(error)
            print(f"emohrnet-fast: error: {errors[i]}", file=sys.stderr)
    results = dict(
        zip(
            waveforms,
            predictor(list(waveforms.values()), predictor.sample_rate, top_k=args.top_k),
            strict=True,
        )
    )
    if args.json:
        entries = [
            {"file": name, "predictions": results[i]}
            if i in results
            else {"file": name, "error": errors[i]}
            for i, name in enumerate(args.files)
        ]
        print(json.dumps(entries, indent=2))
    elif results:
        rows = [
            [
                args.files[i],
                ranked[0]["label"],
                f"{ranked[0]['score']:.3f}",
                _ranking(ranked[1:]),
            ]
            for i, ranked in results.items()
        ]
        print(_table(["file", "emotion", "score", "others"], rows))
    return 1 if errors else 0


# `timeline --csv` without a path: print the CSV (a Path, as argparse's type makes a given one).
_STDOUT = Path("-")


def _timeline(args: argparse.Namespace) -> int:
    if args.csv == _STDOUT and args.json:
        raise ValueError("--csv without a path prints CSV, --json prints JSON: choose one")
    predictor = _predictor(args)
    timeline = predictor.timeline(args.file, window_s=args.window, hop_s=args.hop)
    if args.csv and args.csv != _STDOUT:
        timeline.to_csv(args.csv)
    if args.plot:
        timeline.plot(args.plot)
    if args.csv == _STDOUT:
        print(timeline.csv_text(), end="")
        return 0
    segments = timeline.segments
    if args.json:
        payload = {
            "file": args.file,
            "duration": timeline.duration,
            "window_s": timeline.window_s,
            "hop_s": timeline.hop_s,
            "labels": list(timeline.labels),
            "windows": [
                {
                    "start": start,
                    "end": end,
                    "probabilities": dict(zip(timeline.labels, p, strict=True)),
                }
                for start, end, p in zip(
                    timeline.starts.tolist(),
                    timeline.ends.tolist(),
                    timeline.probabilities.tolist(),
                    strict=True,
                )
            ],
            "segments": [
                {"start": s.start, "end": s.end, "label": s.label, "score": s.score}
                for s in segments
            ],
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(
        f"{args.file}: {timeline.duration:.2f} s, {len(timeline)} "
        f"window{'' if len(timeline) == 1 else 's'} of {timeline.window_s:g} s every "
        f"{timeline.hop_s:g} s"
    )
    rows = [[f"{s.start:.2f}", f"{s.end:.2f}", s.label, f"{s.score:.3f}"] for s in segments]
    print(_table(["start", "end", "emotion", "mean score"], rows))
    for what, path in (("windows", args.csv), ("plot", args.plot)):
        if path and path != _STDOUT:
            print(f"{what}: {path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from emohrnet_fast.infer import demo_clips

    clips = demo_clips(args.clips)
    predictor = _predictor(args)
    results = predictor([clip.path for clip in clips])
    rows, correct = [], 0
    for clip, ranked in zip(clips, results, strict=True):
        hit = ranked[0]["label"] == clip.label
        correct += hit
        rows.append(
            [
                clip.path.name,
                clip.speaker or "-",
                clip.label,
                ranked[0]["label"],
                f"{ranked[0]['score']:.3f}",
                "ok" if hit else "x",
            ]
        )
    print(_table(["file", "speaker", "true", "predicted", "score", ""], rows))
    unknown = sorted({clip.label for clip in clips} - set(predictor.labels))
    if unknown:
        print(f"(labels the model does not know, always wrong: {', '.join(unknown)})")
    print(f"accuracy: {correct}/{len(clips)} ({100 * correct / len(clips):.1f} %)")
    return 0


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        action="append",
        help="'default' (the bundled model) or a checkpoint / run folder (default: default); "
        "repeated: an ensemble, the mean of the models' probabilities",
    )
    group.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when usable)")
    group.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="bf16: bfloat16 autocast; auto: bf16 on CUDA, fp32 on the CPU (default: auto)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model, each input shape the second time it runs: seconds of "
        "compilation, then faster batches (long timelines, many clips of one length)",
    )
    _add_speaker_audio_arg(group)


def _add_model_choice(group) -> None:
    group.add_argument(
        "--model",
        default="default",
        help="'default' (the bundled model) or a checkpoint / run folder (default: default)",
    )


def _add_speaker_audio_arg(group) -> None:
    group.add_argument(
        "--speaker-audio",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="a speaker-normalised model: unlabelled clips of the one speaker it hears, "
        "whose feature statistics it uses (Predictor.adapt); after the other files, or repeated",
    )


def _add_corpus_args(parser: argparse.ArgumentParser) -> None:
    from emohrnet_fast.data import known_corpora

    group = parser.add_argument_group("data")
    group.add_argument("--corpus", required=True, choices=known_corpora(), help="corpus layout")
    group.add_argument("--root", required=True, type=Path, help="corpus folder (csv: manifest)")
    group.add_argument(
        "--corpus-option",
        action="append",
        metavar="KEY=VALUE",
        help="corpus option, e.g. label_set=full (iemocap); repeatable",
    )
    group.add_argument("--cache-dir", type=Path, help="decoded-audio cache folder")


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    from emohrnet_fast.config import TrainConfig
    from emohrnet_fast.models import list_models

    defaults = TrainConfig()
    group = parser.add_argument_group("training (defaults: TrainConfig)")
    for field, (flag, options) in _TRAIN_VALUE_OPTIONS.items():
        if field == "model":
            options = {**options, "choices": list_models()}
        default = getattr(defaults, field)
        if default is not None:  # argparse's own default stays None: "keep TrainConfig's"
            text = options.get("help")
            options = {
                **options,
                "help": f"{text}; default {default}" if text else f"default {default}",
            }
        group.add_argument(flag, **options)
    for flag, help_text in _TRAIN_SWITCH_HELP.values():
        # default None, not False: a switch left out keeps TrainConfig's default.
        group.add_argument(flag, action="store_true", default=None, help=help_text)
    group.add_argument("--no-augment", action="store_true", help="no SpecAugment")
    for flag, options in _SPEC_AUGMENT_OPTIONS.values():
        group.add_argument(flag, **options)
    group = parser.add_argument_group("front-end (defaults: the model preset's FrontEndConfig)")
    for flag, options in _FRONTEND_OPTIONS.values():
        group.add_argument(flag, **options)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("--quiet", action="store_true", help="no progress bars or summaries")

    from emohrnet_fast import __version__

    parser = argparse.ArgumentParser(
        prog="emohrnet-fast", description="Speech emotion recognition on fused kernels."
    )
    parser.add_argument("--version", action="version", version=f"emohrnet-fast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    info_cmd = commands.add_parser(
        "info", parents=[common], help="version, build (CPU/CUDA kernels) and devices"
    )
    info_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    info_cmd.set_defaults(run=_info)

    bench_cmd = commands.add_parser(
        "bench",
        parents=[common],
        help="time our kernels and EmoHRNet-small beside the eager code a user would run "
        "instead, on this machine (the full suite: pytest benchmarks)",
    )
    bench_cmd.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when usable)")
    bench_cmd.add_argument(
        "--batch",
        type=int,
        default=64,
        help="clips per call (default 64; the EmoHRNet-small row a quarter of it)",
    )
    bench_cmd.add_argument(
        "--clip-seconds", type=float, default=4.0, help="clip length (default 4 s at 16 kHz)"
    )
    bench_cmd.add_argument(
        "--repeat",
        type=int,
        default=10,
        help="timed rounds, one call of each side per round, after 2 warm-up calls "
        "(default 10); each row is the median of its side's rounds",
    )
    bench_cmd.add_argument(
        "--no-model", action="store_true", help="skip the EmoHRNet-small row (slow on a CPU)"
    )
    bench_cmd.add_argument("--json", action="store_true", help="print the rows as JSON")
    bench_cmd.set_defaults(run=_bench)

    train_cmd = commands.add_parser(
        "train",
        parents=[common],
        help="train a model on a corpus",
        description="Train a model; checkpoints go to --out every epoch (--resume continues).",
    )
    _add_corpus_args(train_cmd)
    _add_train_args(train_cmd)
    train_cmd.add_argument("--out", required=True, type=Path, help="run folder")
    train_cmd.add_argument(
        "--val-speakers", help="comma-separated speakers held out for validation"
    )
    train_cmd.add_argument("--resume", action="store_true", help="continue the run in --out")
    train_cmd.add_argument(
        "--teacher",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="distil from this trained model, a checkpoint or run folder or 'default' (the "
        "bundled model); repeat for several; needs --distill-weight",
    )
    train_cmd.set_defaults(run=_train)

    eval_cmd = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score a checkpoint on a corpus (WA, UA, macro-F1, confusion matrix)",
    )
    # A string, not a Path: "default" is the bundled model, as for predict's --model.
    eval_cmd.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        help="checkpoint or run folder, or 'default' (the bundled model); repeated: an "
        "ensemble, scored on the mean of the models' probabilities",
    )
    _add_corpus_args(eval_cmd)
    eval_cmd.add_argument("--speakers", help="comma-separated speakers to score (default all)")
    eval_cmd.add_argument("--clip-seconds", type=float, help="centred windows of this length")
    eval_cmd.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when usable)")
    eval_cmd.add_argument("--out", type=Path, help="write report.json/.md and confusion.png")
    eval_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    eval_cmd.set_defaults(run=_evaluate)

    cv_cmd = commands.add_parser(
        "cv",
        parents=[common],
        help="cross-validation study (one model per fold; resumes by default)",
    )
    _add_corpus_args(cv_cmd)
    _add_train_args(cv_cmd)
    cv_cmd.add_argument(
        "--protocol",
        default="loso",
        choices=("loso", "speaker_kfold", "session", "random"),
        help="fold protocol (random is speaker-dependent)",
    )
    cv_cmd.add_argument("--k", type=int, default=5, help="folds for speaker_kfold / random")
    cv_cmd.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="seed of the fold assignment for speaker_kfold / random (default 0)",
    )
    cv_cmd.add_argument("--folds", help="comma-separated fold numbers to run (default all)")
    cv_cmd.add_argument(
        "--out",
        type=Path,
        help="study folder; rerunning into it resumes the study (without --out nothing is "
        "saved: no reports, no checkpoints, no resume)",
    )
    cv_cmd.add_argument(
        "--teacher",
        action="append",
        default=[],
        type=Path,
        metavar="STUDY",
        help="distil each fold from this finished study's model of the same fold (repeat for "
        "several, e.g. an ensemble's members; needs --distill-weight)",
    )
    cv_cmd.set_defaults(run=_cv)

    ensemble_cmd = commands.add_parser(
        "ensemble",
        parents=[common],
        help="score the mean softmax of several finished cv studies (e.g. seeds 0, 1, 2)",
        description="Average, fold by fold, the test softmax outputs of cv studies of the "
        "same corpus, protocol and folds (nothing is retrained), and print the ensemble's "
        "figures beside each member's on the folds they all finished.",
    )
    ensemble_cmd.add_argument(
        "studies", nargs="+", type=Path, metavar="STUDY", help="cv --out folders (two or more)"
    )
    ensemble_cmd.add_argument("--out", type=Path, help="write the ensemble's reports here")
    ensemble_cmd.set_defaults(run=_ensemble)

    predict_cmd = commands.add_parser(
        "predict",
        parents=[common],
        help="emotion of audio files",
        description="Classify audio files (any rate; channels averaged). A file that cannot "
        "be read prints an error line, the others still run, and the exit status is 1.",
    )
    predict_cmd.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    _add_model_args(predict_cmd)
    predict_cmd.add_argument("--top-k", type=int, help="show the K best labels (default all)")
    predict_cmd.add_argument("--json", action="store_true", help="print the results as JSON")
    predict_cmd.set_defaults(run=_predict)

    timeline_cmd = commands.add_parser(
        "timeline",
        parents=[common],
        help="emotion over time in a long recording (sliding windows)",
        description="Classify every --window-second window, --hop seconds apart, and print "
        "the segments where the top emotion stays the same.",
    )
    timeline_cmd.add_argument("file", metavar="FILE", help="audio file")
    _add_model_args(timeline_cmd)
    timeline_cmd.add_argument("--window", type=float, default=2.0, help="window, s (2.0)")
    timeline_cmd.add_argument("--hop", type=float, default=0.5, help="hop, s (0.5)")
    timeline_cmd.add_argument(
        "--csv",
        nargs="?",
        const=_STDOUT,
        type=Path,
        metavar="PATH",
        help="one CSV row per window, written to PATH, or printed instead of the table "
        "when PATH is left out",
    )
    timeline_cmd.add_argument("--plot", type=Path, help="write a PNG of the probabilities")
    timeline_cmd.add_argument("--json", action="store_true", help="print windows and segments")
    timeline_cmd.set_defaults(run=_timeline)

    demo_cmd = commands.add_parser(
        "demo",
        parents=[common],
        help="run a model on the bundled demo clips (predicted vs true, accuracy)",
        description="Classify the demo clips (emohrnet_fast/assets/demo: *.wav + labels.csv "
        "with file,label,speaker) and print predicted vs true label and the accuracy.",
    )
    _add_model_args(demo_cmd)
    demo_cmd.add_argument(
        "--clips",
        type=Path,
        help="a folder of clips with labels.csv (file,label[,speaker]) instead of the "
        "bundled demo clips",
    )
    demo_cmd.set_defaults(run=_demo)

    from emohrnet_fast.export import DTYPES

    export_cmd = commands.add_parser(
        "export",
        parents=[common],
        help="ship one fold's model of a finished cv study (calibrated, 16-bit, model card)",
        description="Write fold --fold's final model of a finished cv study as a checkpoint "
        "folder: temperature fitted on the other folds' test utterances, weights in --dtype, "
        "the study's figures in checkpoint.json and MODEL_CARD.md.",
    )
    export_cmd.add_argument("study", type=Path, metavar="STUDY", help="cv --out folder")
    export_cmd.add_argument("--fold", type=int, required=True, help="which fold's model")
    export_cmd.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    export_cmd.add_argument(
        "--dtype",
        default="float16",
        choices=tuple(DTYPES),
        help="stored weights (default float16; loaded as float32)",
    )
    export_cmd.add_argument("--name", help="model name on the card")
    export_cmd.add_argument("--licence-note", help="a line on the corpus's terms for the card")
    export_cmd.set_defaults(run=_export)

    onnx_cmd = commands.add_parser(
        "onnx",
        parents=[common],
        help="write a model as one ONNX graph, waveform in, probabilities out (ONNX Runtime)",
        description="Write --model as an ONNX file: input 'waveform' (batch, samples) at the "
        "model's rate, outputs 'logits' and calibrated 'probabilities'; labels, sample rate "
        "and minimum length in its metadata. Needs pip install 'emohrnet_fast[onnx]'.",
    )
    onnx_cmd.add_argument("out", type=Path, metavar="OUT", help="the .onnx file to write")
    _add_model_choice(onnx_cmd)
    _add_speaker_audio_arg(onnx_cmd)
    onnx_cmd.add_argument("--opset", type=int, help="ONNX opset, >= 17 (default: torch's)")
    onnx_cmd.set_defaults(run=_onnx)
    return parser


def _onnx(args: argparse.Namespace) -> int:
    from emohrnet_fast.onnx_export import export_onnx

    out = export_onnx(args.out, args.model, speaker_audio=args.speaker_audio, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from emohrnet_fast.checkpoint import MODEL_FILE
    from emohrnet_fast.export import export_fold

    existed = args.out.exists()
    out = export_fold(
        args.study,
        args.fold,
        args.out,
        dtype=args.dtype,
        name=args.name,
        licence_note=args.licence_note,
    )
    size = (out / MODEL_FILE).stat().st_size / 1e6
    print(f"{'replaced' if existed else 'wrote'} {out} ({size:.1f} MB of weights + MODEL_CARD.md)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("emohrnet-fast: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"emohrnet-fast: error: {_one_line(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
