"""One exception hierarchy for the whole project.

Every error the project raises on bad input derives from :class:`PipelineError`
and, where one fits, from the matching builtin too (as zarr-python does), so a
caller can catch either ``PipelineError`` or e.g. ``FileNotFoundError``.
Messages name the file, URI or value at fault and say what to do about it.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error raised by pipeline, stores, model and workflows."""


class ConfigError(PipelineError, ValueError):
    """A configuration value is invalid (the message names the field and the fix)."""


class AudioError(PipelineError):
    """An audio file cannot be turned into a usable signal."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Rebuild from (path, reason), not from the formatted message, so the
        # error survives pickling across Dask worker processes.
        return (type(self), (self.path, self.reason))


class AudioDecodeError(AudioError, ValueError):
    """The file is not decodable audio (empty, header-only, truncated, not audio)."""


class InvalidSamplesError(AudioError, ValueError):
    """The decoded signal holds NaN or Inf samples."""


class TooShortError(AudioError, ValueError):
    """The clip is shorter than one analysis window."""


class DatasetError(PipelineError, FileNotFoundError):
    """A dataset root, metadata file or genre folder is missing or malformed."""


class StoreError(PipelineError):
    """A feature store cannot be opened, written or trusted."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """Nothing at the URI looks like a feature store."""


class StoreIncompleteError(StoreError):
    """The store's build did not finish (resume the build or pass --allow-incomplete)."""


class SchemaVersionError(StoreError):
    """The store was written by a newer schema version than this code reads."""


class ConfigMismatchError(StoreError, ValueError):
    """Two configurations that must agree do not (store vs build, checkpoint vs store)."""


class BuildError(PipelineError):
    """A build failed as a whole (too many failed clips, lost scheduler, ...)."""


class ModelError(PipelineError):
    """A model, checkpoint or training run cannot proceed."""


class FeatureError(PipelineError, ValueError):
    """A signal or array cannot go through feature extraction (wrong shape, dtype, length, values)."""


class StoreAccessError(StoreError, PermissionError):
    """Object storage refused the credentials for a store URI (the message says where they come from)."""


class StoreConnectionError(StoreError, ConnectionError):
    """The server of a remote store URI cannot be reached (after the backend's own retries)."""
