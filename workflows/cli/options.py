"""Options shared by several sub-commands: ``KEY=VALUE`` pairs and ``--storage-option``."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re

from pipeline.errors import ConfigError
from workflows.recipe import parse_value


def parse_key_values(pairs: list[str] | None, *, flag: str) -> dict[str, object]:
    """``["key=value", ...]`` of a repeatable ``flag`` -> dict.

    Values are read as recipe ``--set`` values are
    (:func:`workflows.recipe.parse_value`: ``true``, ``64``, ``[16,32]``,
    else the text itself); dotted keys nest (``client_kwargs.endpoint_url=http://...``).
    """
    options: dict[str, object] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r} must look like key=value")
        target = options
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})  # type: ignore[assignment]
        target[leaf] = parse_value(raw)
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


def integers(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (an argparse type)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} must be comma-separated integers, e.g. 0,1,2") from exc


def field_docs(cls: type) -> dict[str, str]:
    """``name : text`` entries of a dataclass's ``Attributes`` docstring section, by field name.

    An entry may document several fields (``lr, weight_decay : ...``) and
    continue on more deeply indented lines.
    """
    docs: dict[str, str] = {}
    current: list[str] = []
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        match = re.match(r"^(\w+(?:, \w+)*) : (.*)$", line)
        if match:
            current = [name.strip() for name in match.group(1).split(",")]
            for name in current:
                docs[name] = match.group(2).strip()
        elif current and line.startswith(" ") and line.strip():
            for name in current:
                docs[name] += " " + line.strip()
        else:
            current = []
    return docs


def add_config_options(parser: argparse.ArgumentParser, cls: type, *, skip: set[str] = frozenset(),
                       choices: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """One flag per field of the frozen config dataclass ``cls``, generated from its fields.

    ``--field-name VALUE`` (int, float, str; comma-separated integers for
    ``tuple[int, ...]``), ``--no-field`` for a bool that defaults to true and
    ``--field`` for one that defaults to false. Every flag defaults to None,
    so only the flags given are passed on and the defaults stay the
    dataclass's; the help text is the field's docstring entry and default.

    Returns the names of the fields that got a flag.
    """
    docs = {name: text.replace("%", "%%") for name, text in field_docs(cls).items()}  # argparse %-formats help
    added = []
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        default = field.default
        about = docs.get(field.name, "")
        flag = "--" + field.name.replace("_", "-")
        kind = str(field.type)
        if kind == "bool":
            if default is True:
                parser.add_argument(f"--no-{field.name.replace('_', '-')}", dest=field.name, action="store_false",
                                    default=None, help=f"turn off: {about}" if about else None)
            else:
                parser.add_argument(flag, dest=field.name, action="store_true", default=None, help=about or None)
        elif kind.startswith("tuple[int"):
            parser.add_argument(flag, dest=field.name, type=integers, default=None, metavar="N,N,...",
                                help=f"{about} (comma-separated)".strip())
        elif kind in ("int", "float", "str"):
            options = (choices or {}).get(field.name)
            shown = f"{about.rstrip('.')} (default {default})" if about else f"default {default}"
            parser.add_argument(flag, dest=field.name, type={"int": int, "float": float, "str": str}[kind],
                                choices=options, default=None, help=shown)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: no flag for a field of type {kind}; skip it")
        added.append(field.name)
    return added
