"""``pipeline info``, ``verify`` and ``export``: inspect and ship a store."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    from pipeline.cli import add_storage_option

    p = commands.add_parser("info", help="summarise a store: counts, variants, features, size, provenance")
    p.add_argument("uri")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_storage_option(p)
    p.set_defaults(func=info)

    p = commands.add_parser("verify", help="check a store: completeness, shapes, finite values, schema")
    p.add_argument("uri")
    p.add_argument("--json", action="store_true")
    add_storage_option(p)
    p.set_defaults(func=verify)

    p = commands.add_parser("export", help="copy a store into a single read-only zip file")
    p.add_argument("uri")
    p.add_argument("out", help="destination .zip path")
    add_storage_option(p)
    p.set_defaults(func=export)


def info(args: argparse.Namespace) -> int:
    from stores.cli import info_command

    return info_command(args)


def verify(args: argparse.Namespace) -> int:
    from stores.cli import verify_command

    return verify_command(args)


def export(args: argparse.Namespace) -> int:
    from stores.cli import export_command

    return export_command(args)
