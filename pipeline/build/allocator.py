"""Give every process that extracts features an allocator that keeps its memory between clips.

Two traps, one fix. Dask's nanny puts ``MALLOC_TRIM_THRESHOLD_=65536`` into
every worker's environment by default (``distributed.nanny.pre-spawn-environ``).
Setting any of glibc's malloc tunables (``M_TRIM_THRESHOLD``, ``M_TOP_PAD``,
``M_MMAP_THRESHOLD``, ``M_MMAP_MAX``), by environment or ``mallopt``, switches
off glibc's *dynamic* mmap threshold. Stuck at its 128 KiB default, every
large numpy temporary (an STFT of a 30 s clip is ~10 MB) is mmapped,
page-faulted in and unmapped again: measured here, one process extracting
30 s clips went from 2.32 to 1.24 clips/s (system time 0.4 -> 4.7 s for 12
clips) with the variable set.

A plain process is not spared either. The dynamic threshold only rises to
the largest block freed so far and trims the heap whenever twice that lies
free at its top, as it often does between two variants of a clip: the next
one faults its temporaries in again. Measured here (2026-12-07, one process
extracting the 5 variants of a 30 s clip of ``pipeline bench features`` 6
times, 3 alternated pairs of processes): 3,300-8,100 page faults and 5-29 ms
of system time per clip, against 0-130 faults and 0-3 ms with the
thresholds below; median CPU time per clip .au 508 / 486 / 411 ms against
487 / 461 / 397, MP3 579 / 555 / 439 against 513 / 507 / 564 (this
machine's noise is of the same size).

The fix, :func:`tune_allocator`, sets the two thresholds with ``mallopt`` to
where the dynamic rule tops out on 64-bit (mmap 32 MiB, trim 64 MiB) in
every process that extracts features, whatever environment it was started
with: a variant's temporaries come from the heap and stay there, and at most
64 MiB of free heap is kept. It runs in every build and scan task (two calls,
once per process; the clip sandboxes are forked from it and inherit it), so
workers we did not start (``dask worker`` on another machine, the
docker-compose workers) are covered too;
:class:`~pipeline.build.worker_plugin.AllocatorPlugin` applies it as soon as a
worker joins. Where ``mallopt`` does not exist (not glibc) and a variable is
set, a warning names the fix instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: glibc's malloc tunables; setting any of them freezes the dynamic mmap threshold.
MALLOC_TUNABLE_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_")
#: Where glibc's dynamic threshold tops out on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX), and twice it (its trim rule).
MMAP_THRESHOLD_BYTES = 32 << 20
TRIM_THRESHOLD_BYTES = 64 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_state: dict[str, str] = {}


def frozen_tunables() -> dict[str, str]:
    """The malloc tunables set in this process's environment (empty: glibc adapts by itself)."""
    return {k: os.environ[k] for k in MALLOC_TUNABLE_ENV if k in os.environ}


def tune_allocator() -> str:
    """Set glibc's mmap and trim thresholds in this process, once; return what was done.

    Returns
    -------
    str
        ``"tuned"`` (thresholds set with mallopt), ``"default"`` (no mallopt,
        not glibc, and no variable set: that allocator is left as it is) or
        ``"unavailable"`` (no mallopt while a variable froze glibc's
        threshold: warned).
    """
    if "result" in _state:
        return _state["result"]
    frozen = frozen_tunables()
    if _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES):
        logger.debug("malloc thresholds set: mmap %d, trim %d bytes (environment: %s)",
                     MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES, frozen or "no malloc variables")
        result = "tuned"
    elif not frozen:
        result = "default"
    else:
        logger.warning(
            "this process runs with %s, which makes every large numpy temporary an mmap (feature "
            "extraction about half as fast), and mallopt is not available to undo it; start the Dask "
            "workers without it, e.g. with the config distributed.nanny.pre-spawn-environ."
            "MALLOC_TRIM_THRESHOLD_ removed", ", ".join(f"{k}={v}" for k, v in frozen.items()))
        result = "unavailable"
    _state["result"] = result
    return result


def _mallopt(param: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)))
    except (OSError, AttributeError):
        return False


def nanny_environ_without_tunables(environ: dict) -> dict:
    """A ``distributed.nanny.pre-spawn-environ`` mapping without the malloc tunables."""
    return {k: v for k, v in environ.items() if k not in MALLOC_TUNABLE_ENV}


def quiet_server(server) -> None:  # noqa: ANN001 - a distributed Server (worker or scheduler)
    """Stop the profiler and slow the event-loop tick of a running Dask server (see :class:`pipeline.build.worker_plugin.AllocatorPlugin`)."""
    callbacks = getattr(server, "periodic_callbacks", {}) or {}
    for name in ("profile", "profile-cycle"):
        if name in callbacks:
            callbacks[name].stop()
    tick = callbacks.get("tick")
    if tick is not None and getattr(tick, "callback_time", 0) < 1000:
        tick.stop()
        tick.callback_time = 1000
        tick.start()
