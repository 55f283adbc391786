"""``pipeline info``, ``verify`` and ``export``: parse nothing, print results.

Each command calls one function of :mod:`stores.checks` and prints its dict
as text or JSON; the exit code says whether ``verify`` passed.
"""

from __future__ import annotations

import argparse
import json
import sys

from stores.checks import export_store, format_info, format_verify, store_info, verify_store


def _options(args: argparse.Namespace) -> dict:
    from pipeline.cli import parse_storage_options

    return parse_storage_options(getattr(args, "storage_option", None))


def info_command(args: argparse.Namespace) -> int:
    info = store_info(args.uri, storage_options=_options(args))
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def verify_command(args: argparse.Namespace) -> int:
    report = verify_store(args.uri, storage_options=_options(args))
    print(json.dumps(report, indent=2) if args.json else format_verify(report))
    return 0 if report["ok"] else 1


def export_command(args: argparse.Namespace) -> int:
    out = export_store(args.uri, args.out, storage_options=_options(args))
    print(f"exported to {out} ({out.stat().st_size / 2**20:.1f} MiB); open it with `pipeline info {out}`",
          file=sys.stderr)
    return 0
