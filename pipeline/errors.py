"""One exception hierarchy for the whole project.

Every error the project raises on bad input derives from :class:`PipelineError`
or, for the store library below (:mod:`stores.errors`), from
:class:`~stores.errors.StoreError`, re-exported here (:data:`PROJECT_ERRORS`
holds both roots). Each derives, where one fits, from the matching builtin
too (as zarr-python does), so a caller can catch e.g. ``FileNotFoundError``.
Messages name the file, URI or value at fault and say what to do about it.
"""

from __future__ import annotations

from stores.errors import (ConfigMismatchError, CredentialError, SchemaVersionError, StoreAccessError,
                           StoreConnectionError, StoreDamageError, StoreError, StoreIncompleteError,
                           StoreNotFoundError)
from stores.failures import (BAD_AUDIO_CATEGORIES, ENDS_EARLY, FAILURE_CATEGORIES, count_ends_early, count_failures,
                             describe_failure_counts, describe_skipped, failure_category)

__all__ = [
    "BAD_AUDIO_CATEGORIES", "FAILURE_CATEGORIES", "PROJECT_ERRORS", "AudioDecodeError", "AudioError", "BuildError",
    "ClipFailure", "ConfigError", "ConfigMismatchError", "CredentialError", "DatasetError", "FeatureError",
    "InvalidSamplesError", "ModelError", "PartialReadError", "PipelineError", "SchemaVersionError",
    "StoreAccessError", "StoreConnectionError", "StoreDamageError", "StoreError", "StoreIncompleteError",
    "StoreNotFoundError", "TooShortError", "ENDS_EARLY", "count_ends_early", "count_failures",
    "describe_failure_counts", "describe_skipped", "failure_category",
]


class PipelineError(Exception):
    """Root of every error raised by pipeline, model and workflows (the store library's are
    :class:`stores.errors.StoreError`; :data:`PROJECT_ERRORS` holds both roots)."""


#: The two roots: what the command line and the recipe runner report as one line.
PROJECT_ERRORS: tuple[type[Exception], ...] = (PipelineError, StoreError)


class ConfigError(PipelineError, ValueError):
    """A configuration value is invalid (the message names the field and the fix)."""


class AudioError(PipelineError):
    """An audio file cannot be turned into a usable signal.

    ``reason`` says what was found and what to do, without the category;
    ``str(exc)`` is ``"<path>: <category>: <reason>"``. Subclasses fix the
    category; :class:`AudioDecodeError` takes it as an argument.
    """

    category = "not audio"

    def __init__(self, path: object, reason: str, category: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        if category is not None:
            if category not in FAILURE_CATEGORIES:
                raise ValueError(f"category={category!r} is not one of {FAILURE_CATEGORIES}")
            self.category = category
        super().__init__(f"{self.path}: {self.category}: {reason}")

    def __reduce__(self):
        # Rebuild from (path, reason, category), not from the formatted
        # message, so the error survives pickling across Dask worker processes.
        return (type(self), (self.path, self.reason, self.category))


class PartialReadError(PipelineError):
    """A decoder read bytes of a partly fetched object that were never fetched.

    Not a failure of the clip: the object is fetched whole and decoded again
    (:mod:`pipeline.dsp.partial`).
    """


class AudioDecodeError(AudioError, ValueError):
    """The file is not decodable audio: ``category`` is "empty", "not audio",
    "truncated" or "unreadable" (default "not audio")."""


class InvalidSamplesError(AudioError, ValueError):
    """The decoded signal holds NaN or Inf samples."""

    category = "corrupt samples"


class TooShortError(AudioError, ValueError):
    """The clip is shorter than one analysis window."""

    category = "too short"


class ClipFailure(PipelineError):
    """A clip failed for a reason other than its audio: the decoder crashed, ran
    out of memory or time, or our code raised (``category`` says which)."""

    def __init__(self, category: str, reason: str) -> None:
        if category not in FAILURE_CATEGORIES:
            raise ValueError(f"category={category!r} is not one of {FAILURE_CATEGORIES}")
        self.category = category
        self.reason = reason
        super().__init__(f"{category}: {reason}")

    def __reduce__(self):
        return (type(self), (self.category, self.reason))


class DatasetError(PipelineError, FileNotFoundError):
    """A dataset root, metadata file or genre folder is missing or malformed."""


class BuildError(PipelineError):
    """A build failed as a whole (too many failed clips, lost scheduler, ...)."""


class ModelError(PipelineError):
    """A model, checkpoint or training run cannot proceed."""


class FeatureError(PipelineError, ValueError):
    """A signal or array cannot go through feature extraction (wrong shape, dtype, length, values)."""
