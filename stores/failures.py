"""Why a clip failed, as a store records it: the categories of the ``reason``
column and the counts of failures by category.

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
