"""The checks every config and recipe section shares, with one wording.

Each function takes ``where``, the dotted name the user wrote (``train.epochs``,
``recipe build.max_failures``), and the value; it returns the value (as the
type it must be) or raises a :class:`~pipeline.errors.ConfigError` that says
``<where>=<value> must be ...``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pipeline.errors import ConfigError


def integer(where: str, value: Any, *, minimum: int | None = None) -> int:
    """An int (not a bool), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        if minimum == 1:
            raise ConfigError(f"{where}={value!r} must be a positive integer")
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{where}={value!r} must be an integer{bound}")
    return value


def number(where: str, value: Any, *, positive: bool = False, minimum: float | None = None) -> float:
    """A finite int or float (not a bool): > 0 when ``positive``, >= ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}={value!r} must be a finite number")
    if positive and value <= 0:
        raise ConfigError(f"{where}={value!r} must be a positive finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}={value!r} must be >= {minimum}")
    return float(value)


def number_range(where: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    """A ``[low, high]`` pair with ``lo <= low <= high <= hi``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{where}={value!r} must be a pair [low, high]")
    low, high = number(where, value[0]), number(where, value[1])
    if not (lo <= low <= high <= hi):
        raise ConfigError(f"{where}={list(value)!r} must satisfy {lo} <= low <= high <= {hi}")
    return low, high


def one_of(where: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def text(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}={value!r} must be a string")
    return value


def flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}={value!r} must be true or false")
    return value


def text_list(where: str, value: Any) -> tuple[str, ...]:
    """A list of strings; a comma-separated string is split (``--set train.models=dfn,cnn``)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}={value!r} must be a list of strings")
    return tuple(value)


def integer_list(where: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ConfigError(f"{where}={value!r} must be a list of integers")
    return tuple(value)


def keys(where: str, values: Any, valid: set[str]) -> None:
    """No key of ``values`` outside ``valid`` (the message lists the valid ones)."""
    bad = set(values) - valid
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} in {where}; valid keys: {', '.join(sorted(valid))}")
