"""Command line: ``emohrnet-fast <command>`` (also ``python -m emohrnet_fast``).

Errors print one line (``emohrnet-fast: error: ...``) and exit with status 1; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    from emohrnet_fast import info

    report = info()
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
    if not args.quiet:
        print(corpus.summary(), file=sys.stderr)
    return corpus


def _train_config(args: argparse.Namespace):
    from emohrnet_fast import SpecAugmentConfig, TrainConfig

    fields = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "clip_seconds": args.clip_seconds,
        "seed": args.seed,
        "device": args.device,
        "precision": args.precision,
        "compile": args.compile,
        "optimizer": args.optimizer,
        "weight_decay": args.weight_decay,
    }
    fields = {key: value for key, value in fields.items() if value is not None}
    if args.no_augment:
        fields["spec_augment"] = None
    elif args.time_masks is not None or args.freq_masks is not None:
        fields["spec_augment"] = SpecAugmentConfig(
            **{
                key: value
                for key, value in (("freq_masks", args.freq_masks), ("time_masks", args.time_masks))
                if value is not None
            }
        )
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


def _train(args: argparse.Namespace) -> int:
    from emohrnet_fast import models, train

    config = _train_config(args)
    frontend = config.frontend or models.model_config(config.model).frontend
    corpus = _corpus(args, frontend.sample_rate)
    train_set, val_set = corpus, None
    if args.val_speakers:
        train_set, val_set = _split_by_speakers(corpus, args.val_speakers)
    result = train(
        config,
        train_set,
        val_set,
        out_dir=args.out,
        resume=args.resume,
        progress=False if args.quiet else None,
        quiet=args.quiet,
    )
    best = result.best_checkpoint or result.last_checkpoint
    print(f"checkpoint: {best}")
    if result.val_report is not None:
        print(result.val_report.markdown(), end="")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from emohrnet_fast import evaluate, load_model

    model = load_model(args.checkpoint, device=args.device or "cpu")
    corpus = _corpus(args, model.default_frontend.sample_rate)
    if args.speakers:
        _, corpus = _split_by_speakers(corpus, args.speakers)
    report = evaluate(
        model,
        corpus,
        clip_seconds=args.clip_seconds,
        meta={"checkpoint": str(args.checkpoint), "speakers": args.speakers or "all"},
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
    from emohrnet_fast import cross_validate, models

    config = _train_config(args)
    frontend = config.frontend or models.model_config(config.model).frontend
    corpus = _corpus(args, frontend.sample_rate)
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    result = cross_validate(
        config,
        corpus,
        args.protocol,
        k=args.k,
        folds=folds,
        out_dir=args.out,
        resume=True,
        progress=False if args.quiet else None,
        quiet=args.quiet,
    )
    print(result.markdown(), end="")
    return 0


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
    from emohrnet_fast.models import list_models

    group = parser.add_argument_group("training (defaults: TrainConfig)")
    group.add_argument("--model", choices=list_models(), help="model preset")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=float, help="peak learning rate")
    group.add_argument("--optimizer", choices=("adam", "adamw"))
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--clip-seconds", type=float, help="training crop length, s")
    group.add_argument("--seed", type=int)
    group.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when usable)")
    group.add_argument("--precision", choices=("fp32", "bf16"))
    group.add_argument("--compile", action="store_true", default=None, help="torch.compile")
    group.add_argument("--no-augment", action="store_true", help="no SpecAugment")
    group.add_argument("--freq-masks", type=int, help="SpecAugment frequency masks")
    group.add_argument("--time-masks", type=int, help="SpecAugment time masks")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("--quiet", action="store_true", help="no progress bars or summaries")

    parser = argparse.ArgumentParser(
        prog="emohrnet-fast", description="Speech emotion recognition on fused kernels."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    info_cmd = commands.add_parser(
        "info", parents=[common], help="version, build (CPU/CUDA kernels) and devices"
    )
    info_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    info_cmd.set_defaults(run=_info)

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
    train_cmd.set_defaults(run=_train)

    eval_cmd = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score a checkpoint on a corpus (WA, UA, macro-F1, confusion matrix)",
    )
    eval_cmd.add_argument("--checkpoint", required=True, type=Path, help="checkpoint or run")
    _add_corpus_args(eval_cmd)
    eval_cmd.add_argument("--speakers", help="comma-separated speakers to score (default all)")
    eval_cmd.add_argument("--clip-seconds", type=float, help="centred windows of this length")
    eval_cmd.add_argument("--device", help="cpu or cuda")
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
    cv_cmd.add_argument("--folds", help="comma-separated fold numbers to run (default all)")
    cv_cmd.add_argument(
        "--out", type=Path, help="study folder; rerunning into it resumes the study"
    )
    cv_cmd.set_defaults(run=_cv)
    return parser


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
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"emohrnet-fast: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
