"""Why a clip failed, as a store records it: the categories of the ``reason``
column and the counts of failures by category; the "ends early" note of an ok
clip; the wording of the files under a dataset root that are not clips.

Recorded data, read by ``pipeline info``/``verify`` as well as by the build
that writes it, so it lives with the store format.
"""

from __future__ import annotations

from typing import Mapping, Sequence


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
