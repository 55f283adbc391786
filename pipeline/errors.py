"""One exception hierarchy for the whole project.

Every error the project raises on bad input derives from :class:`PipelineError`
and, where one fits, from the matching builtin too (as zarr-python does), so a
caller can catch either ``PipelineError`` or e.g. ``FileNotFoundError``.
Messages name the file, URI or value at fault and say what to do about it.
"""

from __future__ import annotations

from typing import Mapping, Sequence


class PipelineError(Exception):
    """Root of every error raised by pipeline, stores, model and workflows."""


class ConfigError(PipelineError, ValueError):
    """A configuration value is invalid (the message names the field and the fix)."""


#: Why a clip failed, one word or two per kind. The store's ``reason`` column
#: starts with one of these and ": " (see :func:`failure_category`), so the
#: kind of every failure is recorded per clip without a schema change, and
#: ``pipeline build``, ``scan`` and ``info`` count failures by kind.
#: The first group is bad audio (the file's fault); the last three are ours
#: or the decoder's (``internal error`` is always a bug to report).
FAILURE_CATEGORIES: tuple[str, ...] = (
    "too short",        # less audio than one analysis window
    "empty",            # 0 bytes, header only, no samples
    "not audio",        # not a container/codec anything here decodes
    "truncated",        # the container declares more than decodes
    "corrupt samples",  # NaN/Inf in the decoded signal
    "unreadable",       # the file or object cannot be read at all (missing, permissions, network)
    "decoder crash",    # the process decoding the clip died (signal, abort)
    "out of memory",    # decoding or extraction exhausted the clip's memory limit
    "time-out",         # the clip took longer than its time limit
    "internal error",   # an exception that is not an AudioError: our bug
)
#: Categories caused by the audio file itself (the rest are crashes and bugs).
BAD_AUDIO_CATEGORIES: tuple[str, ...] = FAILURE_CATEGORIES[:6]


#: The note an ok clip's ``reason`` starts with (then ": ") when its file ends a little before the
#: length its container declares (cut inside its last page or frame): the clip is kept with the
#: length that decodes, and ``pipeline info`` counts such clips.
ENDS_EARLY = "ends early"


def count_ends_early(reasons: Sequence[str]) -> int:
    """How many of the ok clips' stored ``reasons`` say the file ends early."""
    return sum(str(reason).startswith(ENDS_EARLY + ":") for reason in reasons)


def failure_category(reason: str) -> str:
    """The category a stored failure ``reason`` starts with ("other" for stores
    written before categories were recorded, "" for an empty reason)."""
    if not reason:
        return ""
    head = reason.split(":", 1)[0].strip()
    return head if head in FAILURE_CATEGORIES else "other"


def count_failures(reasons: Sequence[str]) -> dict[str, int]:
    """Failed clips per category (:data:`FAILURE_CATEGORIES`), from stored reasons."""
    counts: dict[str, int] = {}
    for reason in reasons:
        category = failure_category(str(reason)) or "other"
        counts[category] = counts.get(category, 0) + 1
    return counts


def describe_failure_counts(counts: Mapping[str, int]) -> str:
    """``"3 bad audio (2 truncated, 1 empty), 1 internal error"``: bad audio apart from crashes and bugs."""
    bad = {k: v for k, v in counts.items() if k in BAD_AUDIO_CATEGORIES}
    other = {k: v for k, v in counts.items() if k not in BAD_AUDIO_CATEGORIES}
    parts = []
    if bad:
        parts.append(f"{sum(bad.values())} bad audio ("
                     + ", ".join(f"{v} {k}" for k, v in sorted(bad.items(), key=lambda kv: -kv[1])) + ")")
    parts += [f"{v} {k}" for k, v in sorted(other.items(), key=lambda kv: -kv[1])]
    return ", ".join(parts)


def describe_skipped(why: str, paths: Sequence[str], *, examples: int = 1) -> str:
    """``"skipped 312 files that are not audio: 290 .jpg, 15 .txt, 7 .m3u (e.g. rock/cover.jpg)"``.

    ``paths`` are dataset-relative; they are counted by extension (most first).
    """
    by_kind: dict[str, list[str]] = {}
    for path in paths:
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        stem, dot, ext = name.rpartition(".")
        kind = "folder" if str(path).endswith("/") else (f".{ext.lower()}" if dot and stem else "(no extension)")
        by_kind.setdefault(kind, []).append(str(path))
    ranked = sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    n = len(paths)
    listed = ", ".join(f"{len(v)} {k}" for k, v in ranked)
    shown = ", ".join(ranked[0][1][:examples]) if ranked else ""
    if n == 1 and why.startswith("that are "):
        why = "that is " + why[len("that are "):]
    return f"skipped {n} {'file' if n == 1 else 'files'} {why}: {listed} (e.g. {shown})"


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
