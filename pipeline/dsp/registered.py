"""The functions the feature and augmentation registries name, imported on first use.

:mod:`pipeline.config` registers the built-in features and augmentations
with their functions named ``"module:attribute"`` (it must not import the DSP
layer above it); the DSP layer, which calls them, resolves the names here.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

from pipeline.config import FunctionRef
from pipeline.errors import ConfigError


def resolve(ref: FunctionRef, *, what: str) -> Callable[..., Any]:
    """The callable ``ref`` names (``ref`` itself if it is callable).

    Parameters
    ----------
    ref : callable or str
        ``"package.module:function"``.
    what : str
        What the function is for, e.g. ``"augmentation 'gain'"`` (messages).

    Raises
    ------
    ConfigError
        ``ref`` is malformed, its module does not import or lacks the attribute.
    """
    if callable(ref):
        return ref
    return _import(str(ref), what)


@functools.lru_cache(maxsize=None)
def _import(ref: str, what: str) -> Callable[..., Any]:
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what}: function {ref!r} must be written 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import {module_name!r} for {ref!r}: {exc}") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{what}: {module_name!r} has no function {attribute!r}; fix the registration of {ref!r}")
    return function
