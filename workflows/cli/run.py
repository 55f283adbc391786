"""``pipeline run RECIPE`` and ``pipeline demo``: declare the arguments, call one function each."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from pipeline.errors import ConfigError
from workflows.recipe import load_recipe, recipe_names


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``run`` and ``demo`` sub-commands to the ``pipeline`` parser."""
    p = commands.add_parser(
        "run", help="run an experiment recipe end to end (build -> train -> evaluate -> report)",
        description="Run a recipe (a shipped name such as paper-comparison, paper-ablation, cross-validation, "
                    "noise-robustness, latency, demo; or a .toml path). Finished stages are skipped on a rerun.",
    )
    p.add_argument("recipe", nargs="?", help="shipped recipe name or path to a .toml recipe")
    p.add_argument("--list", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--dataset", help="dataset adapter (demo, gtzan, fma-small, fma-medium, fma-large, folder)")
    p.add_argument("--root", help="dataset root folder (required for every dataset but demo)")
    p.add_argument("--split", help="split scheme (default: gtzan fault-filtered, fma official)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>[-<dataset>])")
    p.add_argument("--store-dir", help="folder of the shared stores (default: <out>/../stores)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable), e.g. --set train.epochs=5 "
                        "--set train.models='[\"dfn\",\"cnn\"]'")
    p.set_defaults(func=_run)

    p = commands.add_parser(
        "demo", help="the main job on the synthetic demo set: build, train DFN + baselines, evaluate, report",
    )
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo recipe, e.g. --set train.epochs=3")
    p.set_defaults(func=_demo)


def _quiet_dask(args: argparse.Namespace) -> None:
    """Keep the run's own progress readable: distributed's logger is set to INFO by
    dask's config and would print every scheduler/nanny event through our root
    handler. ``-v`` keeps them."""
    if not getattr(args, "verbose", 0):
        logging.getLogger("distributed").setLevel(logging.WARNING)


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """``--dataset/--root/--split`` as recipe overrides, before the ``--set`` ones."""
    pairs = []
    if args.dataset:
        pairs.append(f"dataset.name={json.dumps(args.dataset)}")
    if args.root:
        pairs.append(f"dataset.root={json.dumps(str(Path(args.root).expanduser().resolve()))}")
    if args.split:
        pairs.append(f"dataset.split={json.dumps(args.split)}")
    return pairs + list(args.overrides)


def _run(args: argparse.Namespace) -> int:
    from workflows.runner import run_recipe  # torch and dask: loaded on use

    if args.list or not args.recipe:
        if not args.list:
            raise ConfigError(f"name a recipe to run; shipped recipes: {', '.join(recipe_names())}")
        for name in recipe_names():
            print(name)
        return 0
    recipe = load_recipe(args.recipe, cli_overrides(args))
    _quiet_dask(args)
    out = Path(args.out) if args.out else Path("runs") / (
        recipe.name if recipe.dataset.name == "demo" else f"{recipe.name}-{recipe.dataset.name}")
    run_recipe(recipe, out, store_dir=args.store_dir, echo=lambda s: print(s, flush=True))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from workflows.demo import run_demo  # torch and dask: loaded on use

    _quiet_dask(args)
    run_demo(Path(args.out), overrides=args.overrides, echo=lambda s: print(s, flush=True))
    return 0
