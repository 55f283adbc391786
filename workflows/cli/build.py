"""``pipeline build``: a dataset folder -> a Zarr v3 feature store, on Dask."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipeline.config import load_config
from pipeline.datasets import load_manifest
from pipeline.datasets.base import Manifest
from pipeline.errors import ConfigError
from pipeline.isolation import DEFAULT_CLIP_MEMORY_BYTES, DEFAULT_CLIP_SECONDS, ClipLimits
from pipeline.sources import is_remote
from stores.remote import local_path
from workflows.cli.options import add_storage_option, parse_key_values, parse_storage_options


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("build", help="build a feature store from a dataset")
    add_dataset_options(p)
    p.add_argument("--out", required=True, help="store URI: path, file://, s3://, gs://, memory://")
    where_to = p.add_mutually_exclusive_group()
    where_to.add_argument("--overwrite", action="store_true",
                          help="replace an existing store built with another config (a versioned store: a new version)")
    where_to.add_argument("--update", action="store_true",
                          help="add the clips of a grown collection to the existing store, as a new version "
                               "(only the new clips are computed; existing shards stay byte for byte)")
    p.add_argument("--max-failures", default="0.05", help="failed clips allowed before a non-zero exit: count or fraction (default 0.05)")
    p.add_argument("--clips-per-shard", type=int, default=None,
                   help="clips per store shard (default 16, fewer for under 512 clips so every worker is busy; one task builds one shard)")
    add_clip_limit_options(p)
    add_storage_option(p)
    p.set_defaults(func=run)

    p = commands.add_parser("scan", help="decode every clip of a dataset (no features, no store) and "
                                         "list the files that would fail")
    add_dataset_options(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--csv", metavar="PATH", help="write clip_id,source,category,reason of every failing file")
    add_clip_limit_options(p)
    add_storage_option(p)
    p.set_defaults(func=scan)


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """The options that choose the clips: the same for build and scan."""
    p.add_argument("--dataset", required=True, help="dataset adapter: demo, gtzan, fma-small, fma-medium, fma-large, folder")
    p.add_argument("--root", help="dataset root: a folder or a URI (s3://, gs://, http(s)://, file://); "
                                  "demo: cache folder for the generated audio")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: CPU cores; 0: serial, in this process)")
    where.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--config", help="pipeline config file (.toml or .json); defaults otherwise")
    p.add_argument("--split", default=None, help="dataset split scheme (gtzan: fault-filtered, random, folds)")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", default=[],
                   help="adapter option (repeatable), e.g. clips_per_genre=10 clip_seconds=5 for demo, "
                        "missing=skip for FMA, extensions=+.ape (add to the audio list) or extensions=.wav,.flac "
                        "(only these) for folder and gtzan; unknown options are rejected with the valid ones")
    p.add_argument("--limit", type=int, help="only N clips of the manifest, taken from every label in turn (smoke tests)")


def add_clip_limit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-timeout", type=float, default=DEFAULT_CLIP_SECONDS, metavar="SECONDS",
                   help=f"time limit of one clip, all variants (default {DEFAULT_CLIP_SECONDS:g}); "
                        "a clip past it fails as time-out")
    p.add_argument("--clip-memory", type=float, default=DEFAULT_CLIP_MEMORY_BYTES / 2**30, metavar="GIB",
                   help=f"memory one clip may allocate (default {DEFAULT_CLIP_MEMORY_BYTES / 2**30:g} GiB; "
                        "0: no limit); beyond it the clip fails as out of memory")
    p.add_argument("--no-isolation", action="store_true",
                   help="run clips in the task's own process (debugging: a decoder crash then stops the task)")


def clip_limits_from_args(args: argparse.Namespace) -> ClipLimits:
    memory = None if not args.clip_memory else int(args.clip_memory * 2**30)
    return ClipLimits(seconds=args.clip_timeout, memory_bytes=memory, isolate=not args.no_isolation)


def source_options_from_cli(args: argparse.Namespace) -> dict[str, Any]:
    """``--storage-option`` pairs for a remote ``--root`` (none of them for a local one)."""
    return parse_storage_options(args.storage_option) if is_remote(args.root) else {}


def manifest_from_cli(args: argparse.Namespace) -> Manifest:
    """The manifest that ``--dataset``, ``--root``, ``--split``, ``--dataset-option`` and ``--limit`` choose."""
    dataset_options = parse_key_values(args.dataset_option, flag="--dataset-option")
    manifest = load_manifest(args.dataset, args.root, split=args.split, storage_options=source_options_from_cli(args),
                             **dataset_options)
    if args.limit is not None:
        if args.limit <= 0:
            raise ConfigError(f"--limit={args.limit} must be a positive number of clips")
        manifest = manifest.balanced_head(args.limit)
    return manifest


def run(args: argparse.Namespace) -> int:
    """``pipeline build``: 0, or 1 when failed clips exceed ``--max-failures``."""
    from pipeline.build import build_store  # dask: loaded on use

    summary = build_store(
        manifest_from_cli(args), args.out, config=load_config(args.config), workers=args.workers,
        scheduler=args.scheduler, overwrite=args.overwrite, update=args.update, max_failures=args.max_failures,
        # --storage-option serves whichever of --out and --root is remote (or both).
        storage_options=parse_storage_options(args.storage_option) if local_path(args.out) is None else {},
        clips_per_shard=args.clips_per_shard, progress=True,
        clip_limits=clip_limits_from_args(args), source_storage_options=source_options_from_cli(args),
    )
    print(summary.report())
    return 1 if summary.failures_exceeded else 0


def scan(args: argparse.Namespace) -> int:
    """``pipeline scan``: 0 when every clip decodes, else 1."""
    from pipeline.scan import scan_manifest  # dask: loaded on use

    report = scan_manifest(manifest_from_cli(args), config=load_config(args.config), workers=args.workers,
                           scheduler=args.scheduler, clip_limits=clip_limits_from_args(args),
                           source_storage_options=source_options_from_cli(args))
    if args.csv:
        report.write_csv(args.csv)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.text())
    return 0 if report.n_failed == 0 else 1
