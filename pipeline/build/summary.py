"""What :func:`pipeline.build.build_store` reports: the counts, times and
failed clips of a build (:class:`BuildReport`), printed by ``pipeline build``.

Not :class:`stores.metadata.BuildSummary`, which is the part of it recorded
in the store's metadata."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from stores.failures import describe_failure_counts, describe_skipped

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class BuildReport:
    """The outcome of :func:`build_store`.

    failures : ``(clip_id, source, reason)`` of every failed clip in the store
        (including those of earlier, resumed runs).
    seconds : wall time of the whole call (cluster start included).
    build_seconds : from submitting the first task to the finalized store.
    clips_per_s : clips built by this call / ``build_seconds``.
    task_seconds : summed duration of the shard tasks (decode, extract, write).
    write_seconds : the part of ``task_seconds`` spent writing to the store.
    """

    uri: str
    n_clips: int
    n_ok: int
    n_failed: int
    failures: list[tuple[str, str, str]]
    variants: tuple[str, ...]
    n_shards: int
    shards_built: int
    shards_skipped: int
    clips_built: int
    seconds: float
    build_seconds: float
    clips_per_s: float
    nbytes_stored: int
    fingerprint: str
    max_failures: int
    task_seconds: float = 0.0
    write_seconds: float = 0.0
    dashboard: str | None = None
    failure_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    ends_early: int = 0
    #: The version this build committed (or found unchanged); see stores.versions.
    version: str = ""
    #: What an update left alone: clips in the store whose files are gone from the collection.
    vanished: tuple[str, ...] = ()

    @property
    def failures_exceeded(self) -> bool:
        return self.n_failed > self.max_failures

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["failures_exceeded"] = self.failures_exceeded
        return out

    def report(self) -> str:
        """The closing summary printed by ``pipeline build``."""
        lines = [
            f"store       {self.uri}",
            f"clips       {self.n_ok} ok, {self.n_failed} failed, {self.n_clips} in all",
            *([f"failures    {describe_failure_counts(self.failure_counts)}"] if self.failure_counts else []),
            *([f"ends early  {self.ends_early} clips kept with the length that decodes (cut in their last "
               "page/frame)"] if self.ends_early else []),
            *[f"skipped     {describe_skipped(why, paths)[len('skipped '):]}" for why, paths in self.skipped.items()],
            f"variants    {', '.join(self.variants)}",
            f"shards      {self.shards_built} built, {self.shards_skipped} already done, {self.n_shards} in all",
            f"size        {_human_bytes(self.nbytes_stored)}",
            f"time        {self.seconds:.1f} s ({self.build_seconds:.1f} s building)",
            f"throughput  {self.clips_per_s:.2f} clips/s",
            f"fingerprint {self.fingerprint[:16]}",
            f"version     {self.version} (open exactly this store as {self.uri}@{self.version})",
        ]
        if self.vanished:
            lines.append(f"vanished    {len(self.vanished)} clip(s) of the store are no longer in the collection; "
                         f"they stay in the store: {', '.join(self.vanished[:10])}"
                         + (" ..." if len(self.vanished) > 10 else ""))
        if self.failures:
            lines.append(f"failed clips ({self.n_failed}, allowed {self.max_failures}):")
            lines += [f"  {cid}  {src}: {why}" for cid, src, why in self.failures[:50]]
            if len(self.failures) > 50:
                lines.append(f"  ... and {len(self.failures) - 50} more (see the store's status/reason columns)")
        if self.failures_exceeded:
            lines.append(f"FAILED: {self.n_failed} failed clips exceed --max-failures ({self.max_failures})")
        return "\n".join(lines)


def _human_bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover

