"""The build: a manifest of clips -> a feature store, one Dask task per shard.

One room per part (see :mod:`pipeline.build.run` for the failure handling):

- :mod:`~pipeline.build.plan`: what to build, decided before any task runs
  (store order, failures allowed, the store created or reopened, the tasks);
- :mod:`~pipeline.build.shard_task`: one task, one shard (decode, extract, write);
- :mod:`~pipeline.build.cluster`: where the tasks run (LocalCluster start-up,
  the workers' environment) and :mod:`~pipeline.build.allocator` (their
  memory allocator);
- :mod:`~pipeline.build.run`: :func:`build_store`, the tasks run under one
  shard-error policy;
- :mod:`~pipeline.build.summary`: :class:`BuildReport`, what it reports.

The credentials split between this process and the workers is
:func:`stores.remote.split_credentials`, with everything else remote-storage.
"""

from typing import Any

from pipeline.build.plan import augmented_splits, parse_max_failures, store_order
from pipeline.build.run import SHARD_ERROR_POLICIES, TASK_RETRIES, build_store, progress_bar
from pipeline.build.shard_task import (ShardReport, ShardTask, build_shard, clip_outcomes, clip_variants, excerpt_plan,
                                       extract_for_store)
from pipeline.build.summary import BuildReport

__all__ = [
    "QUIET_CLUSTER_CONFIG", "SHARD_ERROR_POLICIES", "SINGLE_THREAD_ENV", "TASK_RETRIES", "BuildReport", "ShardReport",
    "ShardTask", "augmented_splits", "build_shard", "build_store", "clip_outcomes", "clip_variants", "dask_client",
    "excerpt_plan", "extract_for_store", "parse_max_failures", "progress_bar", "store_order",
]


def __getattr__(name: str) -> Any:
    # The cluster's names import distributed (~0.5 s): only where a cluster starts, not for every command.
    if name in ("QUIET_CLUSTER_CONFIG", "SINGLE_THREAD_ENV", "dask_client"):
        from pipeline.build import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
