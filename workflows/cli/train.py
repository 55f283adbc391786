"""``pipeline train``, ``pipeline evaluate`` and ``pipeline predict``: parse, call one library function.

The training flags are generated from :class:`model.config.TrainConfig`
(:func:`workflows.cli.options.add_config_options`): they default to ``None``
so that the defaults live in the dataclass; only the flags given are passed on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.config import LOADERS, SCHEDULES, TrainConfig
from pipeline.errors import ConfigError
from workflows.cli.options import add_config_options, add_storage_option, integers, parse_key_values, parse_storage_options


class _ModelNamesHelp(argparse.HelpFormatter):
    """Fills ``{models}`` in a help text with the model registry's names when help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None or "{models}" not in text:
            return text
        from model.networks import model_names  # torch: loaded only when the help is shown

        return text.replace("{models}", ", ".join(model_names()))


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train a model on a feature store (DDP under torchrun)",
                            formatter_class=_ModelNamesHelp,
                            description="Train one model. Every option below is a field of model.config.TrainConfig "
                                        "(its default and its check live there); only the flags given are passed on.")
    p.add_argument("--store", required=True, help="store URI")
    p.add_argument("--model", default="dfn", help="model name: {models} (model.networks.PRESETS and NON_NEURAL)")
    p.add_argument("--out", required=True, help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    fields = add_config_options(p, TrainConfig, skip={"model", "model_kwargs"},
                                choices={"schedule": SCHEDULES, "loader": LOADERS})
    p.add_argument("--model-arg", action="append", metavar="NAME=VALUE", default=[],
                   help="builder knob (repeatable), e.g. gru_hidden=64 cnn_channels=[16,32,64]")
    # One meaning of --workers in every command (processes of a build); the loader's are --loader-workers.
    p.add_argument("--workers", dest="old_workers", type=int, help=argparse.SUPPRESS)
    add_storage_option(p)
    p.set_defaults(func=train_command, config_fields=fields)

    p = commands.add_parser("evaluate", help="window- and clip-level metrics of a checkpoint on a split")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (best.pt is used)")
    p.add_argument("--store", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--folds", type=integers, help="evaluate these folds instead of a split")
    p.add_argument("--out", help="output folder (default: CHECKPOINT/eval-SPLIT)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the metrics JSON")
    add_storage_option(p)
    p.set_defaults(func=evaluate_command)

    p = commands.add_parser("predict", help="top genres of audio files")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.set_defaults(func=predict_command)


def train_command(args: argparse.Namespace) -> int:
    from model.train import train  # torch: loaded on use

    if args.old_workers is not None:
        raise ConfigError("pipeline train --workers is now --loader-workers (the loader's threads or processes); "
                          "--workers means the worker processes of a build")
    options: dict[str, Any] = {k: getattr(args, k) for k in args.config_fields if getattr(args, k) is not None}
    if args.model_arg:
        options["model_kwargs"] = parse_key_values(args.model_arg, flag="--model-arg")
    result = train(args.store, args.model, args.out, resume=args.resume,
                   storage_options=parse_storage_options(args.storage_option), **options)
    if result.get("rank", 0) == 0:
        print(json.dumps(result))
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    from model.evaluate import evaluate  # torch: loaded on use

    where = f"folds-{'-'.join(map(str, args.folds))}" if args.folds else args.split
    out = args.out or str(Path(args.checkpoint) / f"eval-{where}")
    metrics = evaluate(args.checkpoint, args.store, out, split=args.split, folds=args.folds,
                       storage_options=parse_storage_options(args.storage_option), device=args.device)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for level in ("window", "clip"):
            m = metrics[level]
            if m is not None:
                print(f"{level:>6}: accuracy {m['accuracy']:.4f}  macro P {m['macro_precision']:.4f}  "
                      f"R {m['macro_recall']:.4f}  F1 {m['macro_f1']:.4f}  (n={m['n']})")
        print(f"{where} of {metrics['store']['uri']}; outputs in {out}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    from model.predict import predict_files  # torch: loaded on use

    results = predict_files(args.checkpoint, args.files, top=args.top, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['file']}: error: {r['error']}", file=sys.stderr)
                continue
            tops = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['file']}: {tops}")
    return 0 if all("error" not in r for r in results) else 1
