"""Options shared by several sub-commands: ``KEY=VALUE`` pairs and ``--storage-option``."""

from __future__ import annotations

import argparse
import json

from pipeline.errors import ConfigError


def parse_key_values(pairs: list[str] | None, *, flag: str) -> dict[str, object]:
    """``["key=value", ...]`` of a repeatable ``flag`` -> dict.

    Values are decoded as JSON where they parse (``true``, ``64``,
    ``[16,32]``), else kept as strings; dotted keys nest
    (``client_kwargs.endpoint_url=http://...``).
    """
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r} must look like key=value")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})  # type: ignore[assignment]
        target[leaf] = value
    return options


def parse_storage_options(pairs: list[str] | None) -> dict[str, object]:
    """``--storage-option`` pairs -> fsspec storage options."""
    return parse_key_values(pairs, flag="--storage-option")


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-option", action="append", metavar="KEY=VALUE", default=[],
        help="fsspec storage option for remote URIs (repeatable), e.g. "
             "client_kwargs.endpoint_url=http://127.0.0.1:7480; credentials are never written to the store",
    )
