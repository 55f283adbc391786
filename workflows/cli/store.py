"""``pipeline info``, ``verify`` and ``export``: inspect and ship a store.

Each command calls one function of :mod:`stores.checks` and prints its dict
as text or JSON; the exit code says whether ``verify`` passed.
"""

from __future__ import annotations

import argparse
import json
import sys

from workflows.cli.options import add_storage_option, parse_storage_options


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="summarise a store: counts, variants, features, size, provenance")
    p.add_argument("uri")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_storage_option(p)
    p.set_defaults(func=info)

    p = commands.add_parser("verify", help="check a store: completeness, shapes, finite values, schema, every "
                                          "object against its checksums (all damage by array and shard; exit 1)")
    p.add_argument("uri")
    p.add_argument("--json", action="store_true")
    add_storage_option(p)
    p.set_defaults(func=verify)

    p = commands.add_parser("export", help="copy a store into a single read-only zip file")
    p.add_argument("uri")
    p.add_argument("out", help="destination .zip path")
    add_storage_option(p)
    p.set_defaults(func=export)

    p = commands.add_parser("log", help="list a store's versions, newest first: id, time, what changed")
    p.add_argument("uri")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_storage_option(p)
    p.set_defaults(func=log)

    p = commands.add_parser("tag", help="name a version of a store (STORE@NAME then opens it)")
    p.add_argument("uri")
    p.add_argument("name", help="the tag: letters, digits, '.', '_', '-'; never moved once set")
    p.add_argument("--version", default=None, help="version id, unique prefix or tag (default: the newest)")
    add_storage_option(p)
    p.set_defaults(func=tag)


def info(args: argparse.Namespace) -> int:
    from stores.checks import format_info, store_info  # zarr: loaded on use, `pipeline --help` stays fast

    result = store_info(args.uri, storage_options=parse_storage_options(args.storage_option))
    print(json.dumps(result, indent=2) if args.json else format_info(result))
    return 0


def verify(args: argparse.Namespace) -> int:
    from stores.checks import format_verify, verify_store  # zarr: loaded on use

    report = verify_store(args.uri, storage_options=parse_storage_options(args.storage_option))
    print(json.dumps(report, indent=2) if args.json else format_verify(report))
    return 0 if report["ok"] else 1


def export(args: argparse.Namespace) -> int:
    from stores.checks import export_store  # zarr: loaded on use

    out = export_store(args.uri, args.out, storage_options=parse_storage_options(args.storage_option))
    print(f"exported to {out} ({out.stat().st_size / 2**20:.1f} MiB); open it with `pipeline info {out}`",
          file=sys.stderr)
    return 0


def log(args: argparse.Namespace) -> int:
    from stores.versions import format_entries, store_log  # zarr: loaded on use

    entries = store_log(args.uri, storage_options=parse_storage_options(args.storage_option))
    print(json.dumps(entries, indent=2) if args.json else format_entries(entries))
    return 0


def tag(args: argparse.Namespace) -> int:
    from stores.versions import tag_store  # zarr: loaded on use

    entry = tag_store(args.uri, args.name, version=args.version,
                      storage_options=parse_storage_options(args.storage_option))
    print(f"tagged version {entry.id} ({entry.change}) as {args.name!r}: open it as {args.uri}@{args.name}",
          file=sys.stderr)
    return 0
