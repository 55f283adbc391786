"""``pipeline scan``: decode every clip of a dataset, compute no features, write no store.

Before a build of hours a user wants to know which files will fail. A scan
runs the build's own decoding (the same config, the same per-clip isolation
and limits of :mod:`pipeline.isolation`, the same Dask cluster) over every
clip's excerpt and reports the failures per category, with a CSV of the
failing files that can be used to exclude them.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from pipeline.build.allocator import tune_allocator
from pipeline.build import clip_outcomes, dask_client, excerpt_plan, progress_bar
from stores.remote import split_credentials
from pipeline.config import PipelineConfig
from pipeline.datasets.base import Manifest, SkippedFiles
from pipeline.errors import (ENDS_EARLY, BuildError, ConfigError, count_failures, describe_failure_counts,
                             describe_skipped)
from pipeline.extract import decode
from pipeline.isolation import ClipLimits
from pipeline.sources import check_root, is_remote, join_root

if TYPE_CHECKING:  # pragma: no cover
    import distributed

logger = logging.getLogger(__name__)

#: Clips decoded by one scan task (decoding is ~0.03 s per 30 s clip, so a task is about a second).
CLIPS_PER_TASK = 32


@dataclasses.dataclass(frozen=True)
class ScannedClip:
    """One clip's decoding outcome: ``seconds`` of real audio in the excerpt when ok."""

    clip_id: str
    source: str
    ok: bool
    category: str = ""
    reason: str = ""
    seconds: float = 0.0
    source_seconds: float = 0.0
    decoder: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ScanReport:
    """What a scan found: every clip's outcome, in manifest order."""

    dataset: str
    clips: tuple[ScannedClip, ...]
    seconds: float
    skipped: tuple[SkippedFiles, ...] = ()

    @property
    def ends_early(self) -> list[ScannedClip]:
        """The ok clips whose file ends a little before its declared length (kept as they decode)."""
        return [c for c in self.clips if c.ok and c.note.startswith(ENDS_EARLY + ":")]

    @property
    def n_failed(self) -> int:
        return sum(not c.ok for c in self.clips)

    @property
    def failures(self) -> list[ScannedClip]:
        return [c for c in self.clips if not c.ok]

    @property
    def failure_counts(self) -> dict[str, int]:
        return count_failures([f"{c.category}: {c.reason}" for c in self.failures])

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "n_clips": len(self.clips), "n_ok": len(self.clips) - self.n_failed,
            "n_failed": self.n_failed, "failures_per_category": self.failure_counts, "seconds": self.seconds,
            "failures": [{"clip_id": c.clip_id, "source": c.source, "category": c.category, "reason": c.reason}
                         for c in self.failures],
            "ends_early": [{"clip_id": c.clip_id, "source": c.source, "note": c.note} for c in self.ends_early],
            "skipped": {group.why: list(group.paths) for group in self.skipped},
        }

    def text(self) -> str:
        lines = [f"scanned     {len(self.clips)} clips of {self.dataset} in {self.seconds:.1f} s",
                 f"decodable   {len(self.clips) - self.n_failed}",
                 f"failing     {self.n_failed}" + (f": {describe_failure_counts(self.failure_counts)}"
                                                   if self.n_failed else "")]
        lines += [f"  {c.source}: {c.category}: {c.reason}" for c in self.failures]
        if self.ends_early:
            lines.append(f"ends early  {len(self.ends_early)} (kept with the length that decodes)")
            lines += [f"  {c.source}: {c.note}" for c in self.ends_early]
        lines += [describe_skipped(group.why, group.paths) for group in self.skipped]
        return "\n".join(lines)

    def write_csv(self, path: str | Path) -> None:
        """``clip_id,source,category,reason`` of every failing clip (a header row first)."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["clip_id", "source", "category", "reason"])
            for c in self.failures:
                writer.writerow([c.clip_id, c.source, c.category, c.reason])


def _decode_summary(audio: "str | bytes", config: PipelineConfig, name: str | None = None
                    ) -> tuple[float, float, str, str]:
    """Decode one clip as the build does: (seconds of audio in the excerpt, source seconds, decoder, note)."""
    clip = decode(audio, config, name=name)
    return clip.valid_samples / config.audio.sample_rate, clip.source_seconds, clip.decoder, clip.note


def scan_clips(clips: Sequence[tuple[str, str, str]], config: PipelineConfig, limits: ClipLimits,
               source_options: Mapping[str, Any] | None = None) -> list[ScannedClip]:
    """Decode ``(clip_id, location, dataset-relative source)`` clips; the body of one scan task."""
    tune_allocator()
    outcomes = clip_outcomes([(location, source, (config,)) for _, location, source in clips], _decode_summary,
                             limits=limits, source_options=source_options, excerpt=excerpt_plan(config))
    out = []
    for (clip_id, location, source), outcome in zip(clips, outcomes):
        if outcome.ok:
            seconds, source_seconds, decoder, note = outcome.value
            out.append(ScannedClip(clip_id, source, True, seconds=seconds, source_seconds=source_seconds,
                                   decoder=decoder, note=note.replace(location, source)))
        else:
            out.append(ScannedClip(clip_id, source, False, outcome.category,
                                   outcome.reason.replace(location, source)))
    return out


def scan_manifest(manifest: Manifest, *, config: PipelineConfig, workers: int | None = None,
                  scheduler: "str | distributed.Client | None" = None, clip_limits: ClipLimits = ClipLimits(),
                  progress: bool = True, source_storage_options: Mapping[str, Any] | None = None) -> ScanReport:
    """Decode every clip of ``manifest`` on the build's cluster (``workers=0``: in this process).

    Raises
    ------
    BuildError
        The manifest is empty, or the cluster cannot be reached.
    """
    if len(manifest) == 0:
        raise BuildError(f"the manifest of {manifest.dataset!r} has no clips; nothing to scan")
    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise ConfigError(f"workers={workers!r} must be 0 (serial) or a positive number of processes")

    t0 = time.perf_counter()
    source_options = dict(source_storage_options or {})
    if is_remote(manifest.root):
        check_root(manifest.root, source_options)
    clips = [(c.clip_id, join_root(manifest.root, c.path), c.path) for c in manifest.clips]
    n_workers = workers if workers else (os.cpu_count() or 1)
    # Enough tasks for every worker to stay busy, none so small that scheduling dominates.
    size = max(1, min(CLIPS_PER_TASK, -(-len(clips) // (4 * n_workers))))
    groups = [clips[i:i + size] for i in range(0, len(clips), size)]
    results: dict[int, list[ScannedClip]] = {}
    with progress_bar(len(clips), progress, desc="scan") as bar:
        if scheduler is None and workers == 0:
            for i, group in enumerate(groups):
                results[i] = scan_clips(group, config, clip_limits, source_options)
                bar.update(len(group))
        else:
            import distributed  # distributed (about 1 s to import): only a cluster scan needs it

            (shared,), worker_env = split_credentials(False, scheduler, source_options)
            with dask_client(min(n_workers, len(groups)), scheduler, worker_env=worker_env) as client:
                futures = {client.submit(scan_clips, group, config, clip_limits, shared, pure=False,
                                         key=f"scan-{config.config_hash()[:8]}-{i}-{time.time_ns()}"): i
                           for i, group in enumerate(groups)}
                for future in distributed.as_completed(list(futures)):
                    results[futures[future]] = future.result()
                    bar.update(len(groups[futures[future]]))
    scanned = tuple(c for i in range(len(groups)) for c in results[i])
    return ScanReport(manifest.dataset, scanned, time.perf_counter() - t0, manifest.skipped)
