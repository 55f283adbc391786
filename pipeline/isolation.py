"""Run each clip's work so that one clip can only ever fail itself.

A decoder is native code fed hostile bytes: it can raise anything, but also
segfault, abort, exhaust memory or hang. :func:`run_isolated` runs a list of
clip jobs in a forked child process (one child per call, so the fork costs
once per shard, not per clip) that streams each clip's outcome back through
a pipe. The parent watches it:

- an exception in a job becomes a failed :class:`Outcome` with a category:
  an :class:`~pipeline.errors.AudioError` keeps its own ("truncated", ...);
  ``MemoryError`` is "out of memory"; anything else is "internal error", a
  bug of ours, whose traceback goes to the log at debug level;
- the child dying (a signal, ``abort()``, ``os._exit``) fails the clip it was
  on as "decoder crash" and a new child continues with the next clip;
- a clip running past :attr:`ClipLimits.seconds` is killed and fails as
  "time-out"; the next clip goes on in a new child;
- :attr:`ClipLimits.memory_bytes` caps the child's address space above what
  it inherited, so a runaway allocation fails one clip instead of the
  machine.

The outcome of every clip is a pure function of the clip (a crash or time-out
is recorded with a fixed reason), so a build that met a crash stores the same
content as one that did not.

Children are forked, so they inherit everything the parent has loaded and
compiled: call :func:`warm_up` work in the parent first (numba kernels,
filterbank caches), or each child would compile again. Where ``os.fork`` does
not exist (Windows), or with ``ClipLimits(isolate=False)``, jobs run in this
process: exceptions are still contained, native faults are not.

Test hook: the environment variable ``HFS_TEST_FAULT="<substring>:<fault>"``
makes the process running a job whose ``name`` contains ``<substring>`` die by
``<fault>``: a signal name (``SIGSEGV``, ``SIGABRT``, ``SIGKILL``), ``hang``
(sleep forever), ``oom`` (allocate until the limit) or ``raise`` (a
RuntimeError, as a bug of ours would). It exists so the tests
can make real process deaths; nothing else sets it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import math
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from typing import Any, Callable, Sequence

from pipeline.errors import AudioError, ClipFailure, ConfigError

logger = logging.getLogger(__name__)

#: Default time limit per clip: a 30 s excerpt with five variants takes about
#: 0.4 core-s here, so 60 s means "stuck", not "slow".
DEFAULT_CLIP_SECONDS = 60.0
#: Default address space a clip may allocate beyond what its process inherited.
DEFAULT_CLIP_MEMORY_BYTES = 4 << 30
#: Environment variable of the test-only fault hook (see the module docstring).
FAULT_HOOK_ENV = "HFS_TEST_FAULT"

_HEADER = struct.Struct("<Q")
_START, _DONE = 0, 1


@dataclasses.dataclass(frozen=True)
class ClipLimits:
    """Limits of one clip's work (a build option, not part of the store's config).

    seconds : wall-clock limit per clip (all of its variants), > 0.
    memory_bytes : address space a clip may add to its process; None: no cap.
    isolate : run clips in a forked child (False: in this process, for debugging).
    """

    seconds: float = DEFAULT_CLIP_SECONDS
    memory_bytes: int | None = DEFAULT_CLIP_MEMORY_BYTES
    isolate: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigError(f"clip time limit {self.seconds!r} must be a positive number of seconds")
        if self.memory_bytes is not None and (isinstance(self.memory_bytes, bool)
                                              or not isinstance(self.memory_bytes, int)
                                              or self.memory_bytes < (64 << 20)):
            raise ConfigError(f"clip memory limit {self.memory_bytes!r} must be at least 64 MiB (or None)")


@dataclasses.dataclass(frozen=True)
class Job:
    """One clip's work: ``name`` appears in logs (and the fault hook); ``args`` go to the work function."""

    name: str
    args: tuple


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one job: ``value`` when ok, else ``category`` and ``reason``."""

    ok: bool
    value: Any = None
    category: str = ""
    reason: str = ""

    @property
    def failure_text(self) -> str:
        """``"<category>: <reason>"``, the form the store's reason column keeps."""
        return f"{self.category}: {self.reason}" if not self.ok else ""


def outcome_of_exception(exc: BaseException, name: str) -> Outcome:
    """The failed outcome of a job that raised ``exc`` (logs internal errors with their traceback)."""
    if isinstance(exc, AudioError):
        return Outcome(False, category=exc.category, reason=exc.reason)
    if isinstance(exc, ClipFailure):
        return Outcome(False, category=exc.category, reason=exc.reason)
    if isinstance(exc, MemoryError):
        return Outcome(False, category="out of memory",
                       reason="decoding or extraction ran out of memory (the clip's memory limit); "
                              "the file is probably damaged, exclude it or raise --clip-memory")
    logger.debug("%s: internal error\n%s", name, "".join(traceback.format_exception(exc)))
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return Outcome(False, category="internal error",
                   reason=f"{type(exc).__name__}: {detail[:300]}; this is a bug of ours, not of the file: "
                          "please report it with the file (run with -vv for the traceback)")


def run_isolated(jobs: Sequence[Job], work: Callable[..., Any], *, limits: ClipLimits = ClipLimits()
                 ) -> list[Outcome]:
    """``work(*job.args)`` for every job, each failure contained to its own job.

    Returns
    -------
    list of Outcome
        In the order of ``jobs``.
    """
    if not jobs:
        return []
    if not limits.isolate or not hasattr(os, "fork"):
        return [_run_one(job, work) for job in jobs]
    outcomes: list[Outcome | None] = [None] * len(jobs)
    next_job = 0
    while next_job < len(jobs):
        next_job = _run_child(jobs, work, limits, next_job, outcomes)
    return outcomes  # type: ignore[return-value]


def _run_one(job: Job, work: Callable[..., Any]) -> Outcome:
    try:
        _fault_hook(job.name)
        return Outcome(True, value=work(*job.args))
    except Exception as exc:  # noqa: BLE001 - every failure of a job is the job's outcome
        return outcome_of_exception(exc, job.name)


# --------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------
def _run_child(jobs: Sequence[Job], work: Callable[..., Any], limits: ClipLimits, first: int,
               outcomes: list[Outcome | None]) -> int:
    """Fork a child for ``jobs[first:]``; collect outcomes until it ends. Returns the next job to run."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its work is checked through the parent
        os.close(read_fd)
        _child_main(jobs, work, limits, first, write_fd)
    os.close(write_fd)
    reader = _Reader(read_fd)
    current: int | None = None
    started = 0.0
    try:
        while True:
            timeout = None if current is None else max(0.0, started + limits.seconds - time.monotonic())
            message = reader.next_message(timeout)
            if message is _TIMED_OUT:
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
                assert current is not None
                outcomes[current] = Outcome(
                    False, category="time-out",
                    reason=f"timed out after {limits.seconds:g} s (the decoder or extraction hung); "
                           "exclude the file or raise --clip-timeout")
                logger.warning("%s: timed out after %g s; killed", jobs[current].name, limits.seconds)
                return current + 1
            if message is None:  # the child ended
                status = _reap(pid)
                if current is None:
                    if first < len(jobs) and outcomes[first] is None and status != 0:
                        # Died before starting its first job (fork-time fault): that job takes the blame.
                        current = first
                    else:
                        return len(jobs)
                outcomes[current] = _crash_outcome(status, limits)
                logger.warning("%s: %s", jobs[current].name, outcomes[current].failure_text)
                return current + 1
            kind, index, payload = message
            if kind == _START:
                current, started = index, time.monotonic()
            else:
                outcomes[index] = payload
                current = None
    finally:
        reader.close()


def _crash_outcome(status: int, limits: ClipLimits) -> Outcome:
    """The outcome of a clip whose process ended with wait status ``status``."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGKILL and limits.memory_bytes is not None:
            why = f"signal {sig} ({name}; killed from outside, perhaps by the kernel's out-of-memory killer)"
        else:
            why = f"signal {sig} ({name})"
    else:
        why = f"exit code {os.WEXITSTATUS(status)}"
    return Outcome(False, category="decoder crash",
                   reason=f"the decoder crashed: {why}; the file is probably damaged or hostile, exclude it")


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:  # pragma: no cover
            continue
        except ChildProcessError:  # pragma: no cover - already reaped elsewhere
            return 0


_TIMED_OUT = object()


class _Reader:
    """Length-prefixed pickled messages from a pipe, with a timeout per message."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.file = os.fdopen(fd, "rb", buffering=0)

    def next_message(self, timeout: float | None):
        """The next ``(kind, index, payload)``, None at end of stream, or ``_TIMED_OUT``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        header = self._read_exact(_HEADER.size, deadline)
        if header is None or header is _TIMED_OUT:
            return header
        (size,) = _HEADER.unpack(header)
        body = self._read_exact(size, deadline, allow_timeout=False)
        if body is None:
            return None
        return pickle.loads(body)

    def _read_exact(self, size: int, deadline: float | None, allow_timeout: bool = True):
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            if deadline is not None and allow_timeout:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self.fd], [], [], max(0.0, left))
                if not ready:
                    return _TIMED_OUT
            n = self.file.readinto(view[got:])
            if not n:
                return None
            got += n
        return buf

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------
# Child side
# --------------------------------------------------------------------------
def _child_main(jobs: Sequence[Job], work: Callable[..., Any], limits: ClipLimits, first: int,
                write_fd: int) -> None:  # pragma: no cover - runs in the forked child
    code = 0
    try:
        # A crash is reported by the parent as the clip's reason; a Python
        # stack dump of the dying child on stderr would only break the progress bar.
        import faulthandler

        faulthandler.disable()
        _die_with_parent()
        _cap_memory(limits.memory_bytes)
        for index in range(first, len(jobs)):
            _send(write_fd, (_START, index, None))
            _send(write_fd, (_DONE, index, _run_one(jobs[index], work)))
    except BaseException:  # noqa: BLE001 - the parent sees the exit code and blames the current job
        code = 70
    finally:
        os._exit(code)


def _send(fd: int, message: tuple) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(_HEADER.pack(len(body)) + body) if len(body) < (1 << 16) else None
    if data is not None:
        _write_all(fd, data)
    else:
        _write_all(fd, memoryview(_HEADER.pack(len(body))))
        _write_all(fd, memoryview(body))


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        n = os.write(fd, data)
        data = data[n:]


def _die_with_parent() -> None:  # pragma: no cover - child only
    """Linux: the kernel kills the child when its parent dies (no orphans from a killed worker)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _cap_memory(extra: int | None) -> None:  # pragma: no cover - child only
    if extra is None:
        return
    try:
        import resource

        with open("/proc/self/statm") as fh:
            vm_bytes = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm_bytes + extra
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, ImportError):
        pass


def _fault_hook(name: str) -> None:
    """The test-only fault injection (see the module docstring); a no-op unless the variable is set."""
    spec = os.environ.get(FAULT_HOOK_ENV)
    if not spec:
        return
    for item in spec.split(","):
        needle, _, fault = item.rpartition(":")
        if not needle or needle not in name:
            continue
        if fault == "hang":
            while True:
                time.sleep(3600)
        if fault == "raise":
            raise RuntimeError(f"fault injected by {FAULT_HOOK_ENV} for {name}")
        if fault == "oom":
            hog = []
            while True:
                hog.append(bytearray(256 << 20))
        os.kill(os.getpid(), getattr(signal, fault))
        time.sleep(5)  # the signal is delivered before this returns
