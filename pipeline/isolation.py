"""Run each clip's work so that one clip can only ever fail itself.

A decoder is native code fed hostile bytes: it can raise anything, but also
segfault, abort, exhaust memory or hang. :func:`run_isolated` runs clip jobs
in a forked child process that lives as long as the calling thread (one fork
per worker thread, not per shard or per clip: a fresh child page-faults its
whole working set in again) and returns each clip's outcome through a pipe.
The parent watches it:

- an exception in a job becomes a failed :class:`Outcome` with a category:
  an :class:`~pipeline.errors.AudioError` keeps its own ("truncated", ...);
  ``MemoryError`` is "out of memory"; anything else is "internal error", a
  bug of ours, whose traceback goes to the log at debug level;
- the child dying (a signal, ``abort()``, ``os._exit``) fails the clip it was
  on as "decoder crash" and a new child is forked for the next clip;
- a clip running past :attr:`ClipLimits.seconds` is killed and fails as
  "time-out"; the next clip goes on in a new child;
- :attr:`ClipLimits.memory_bytes` caps the child's address space above what
  it inherited, so a runaway allocation fails one clip instead of the
  machine.

What a child prints stays off the terminal. Native decoders write their own
chatter to the process's stderr (mpg123's "Note: Skipped 1024 bytes in
input.", ffmpeg's warnings): the child's descriptors 1 and 2 point at a
capture file of its sandbox, which the parent reads after each clip and logs
at debug level with the clip's name (so ``-vv`` shows it). Our own log
records in the child are not in that file: they go back to the parent with
the clip's outcome and are logged there, through the parent's handlers (the
build's progress bar redirects them so that they do not tear it).

The outcome of every clip is a pure function of the clip (a crash or time-out
is recorded with a fixed reason), so a build that met a crash stores the same
content as one that did not.

Children are forked, so they inherit everything the parent has loaded and
compiled: warm the parent up first (:func:`pipeline.extract.warm_up`: numba
kernels, filterbank caches), or each child compiles again. ``work`` and the
job arguments travel to the child by pickle (module-level functions only). Where ``os.fork`` does
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

import atexit
import contextlib
import ctypes
import dataclasses
import faulthandler
import logging
import math
import os
import pickle
import select
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
import weakref
from typing import Any, Callable, Sequence

from pipeline.errors import AudioError, ClipFailure, ConfigError, PartialReadError

logger = logging.getLogger(__name__)

#: Default time limit per clip: a 30 s excerpt with five variants takes about
#: 0.4 core-s here, so 60 s means "stuck", not "slow".
DEFAULT_CLIP_SECONDS = 60.0
#: Default address space a clip may allocate beyond what its process inherited.
DEFAULT_CLIP_MEMORY_BYTES = 4 << 30
#: Environment variable of the test-only fault hook (see the module docstring).
FAULT_HOOK_ENV = "HFS_TEST_FAULT"

#: Outcome category of a decode that needs the whole object (never stored: the caller fetches it and retries).
PARTIAL_READ = "partial read"

_HEADER = struct.Struct("<Q")
#: Bytes of a clip's captured native output that reach the debug log (the rest is counted).
CAPTURE_LOG_BYTES = 16 << 10
#: Log records of one clip sent back from the child (a decoder in a loop of warnings is cut short).
MAX_RECORDS_PER_JOB = 100
_START, _DONE = 0, 1  # messages from the child: a job began; a job ended (with its Outcome)


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
    if isinstance(exc, PartialReadError):
        return Outcome(False, category=PARTIAL_READ, reason=str(exc))
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

    ``work`` and the job arguments are sent to the child by pickle, so
    ``work`` must be a module-level function.

    Returns
    -------
    list of Outcome
        In the order of ``jobs``.
    """
    if not limits.isolate or not hasattr(os, "fork"):
        fault = os.environ.get(FAULT_HOOK_ENV, "")
        return [_run_one(job.name, job.args, work, fault) for job in jobs]
    sandbox = _sandbox_of_this_thread()
    return [sandbox.run(job, work, limits) for job in jobs]


def _run_one(name: str, args: tuple, work: Callable[..., Any], fault: str) -> Outcome:
    try:
        _fault_hook(name, fault)
        return Outcome(True, value=work(*args))
    except Exception as exc:  # noqa: BLE001 - every failure of a job is the job's outcome
        return outcome_of_exception(exc, name)


# --------------------------------------------------------------------------
# Parent side: one long-lived child per thread
# --------------------------------------------------------------------------
#: A child serves this many jobs, then a fresh one is forked (bounds any leak in a decoder).
JOBS_PER_CHILD = 1000
#: How long a child told to stop (its job pipe closed) may take to exit before it is killed.
STOP_GRACE_SECONDS = 5.0

_local = threading.local()
_all_sandboxes: "weakref.WeakSet[_Sandbox]" = weakref.WeakSet()


def _sandbox_of_this_thread() -> "_Sandbox":
    sandbox = getattr(_local, "sandbox", None)
    if sandbox is None:
        sandbox = _local.sandbox = _Sandbox()
        _all_sandboxes.add(sandbox)
    return sandbox


class _Sandbox:
    """A forked child that runs one job at a time, kept alive across jobs and calls.

    Forking once per thread (not per shard or per clip) matters for speed:
    a fresh child page-faults its whole working set in again (measured here,
    0.03 s user + 0.08 s system per fork for a 30 s clip's extraction).
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.to_child: int | None = None
        self.reader: _Reader | None = None
        self.memory: int | None = None
        self.jobs = 0
        self.capture: Any = None  # the file the child's stdout and stderr point at

    def run(self, job: Job, work: Callable[..., Any], limits: ClipLimits) -> Outcome:
        fault = os.environ.get(FAULT_HOOK_ENV, "")  # read per job: the child's environment is a copy
        for attempt in (1, 2):
            self._ensure(limits)
            try:
                _send(self.to_child, (work, job.name, job.args, fault))
            except (pickle.PicklingError, AttributeError, TypeError) as exc:
                return outcome_of_exception(exc, job.name)  # work or arguments cannot be sent: our bug
            except BrokenPipeError:
                started = None  # died while idle (e.g. its creating thread ended)
            else:
                started = self.reader.next_message(limits.seconds)
            if started is None and attempt == 1:
                # The child was gone before it took the job: start another, blame nothing yet.
                self._discard()
                continue
            done = started if started is None or started is _TIMED_OUT else self.reader.next_message(limits.seconds)
            self._log_captured(job.name)
            if done is _TIMED_OUT:
                self._kill()
                logger.warning("%s: timed out after %g s; killed", job.name, limits.seconds)
                return Outcome(False, category="time-out",
                               reason=f"timed out after {limits.seconds:g} s (the decoder or extraction hung); "
                                      "exclude the file or raise --clip-timeout")
            if done is None:
                status = self._discard()
                outcome = _crash_outcome(status, limits)
                logger.warning("%s: %s", job.name, outcome.failure_text)
                return outcome
            _replay(done[2])
            self.jobs += 1
            if self.jobs >= JOBS_PER_CHILD:
                self._stop()
            return done[1]
        raise AssertionError("unreachable")  # pragma: no cover

    def _ensure(self, limits: ClipLimits) -> None:
        if self.pid is not None and self.memory == limits.memory_bytes:
            return
        self._stop()
        if self.capture is None:
            self.capture = tempfile.TemporaryFile(prefix="hfs-clip-stderr-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its work is checked through the parent
            os.close(to_child_w)
            os.close(from_child_r)
            _child_main(to_child_r, from_child_w, limits.memory_bytes, self.capture.fileno())
        os.close(to_child_r)
        os.close(from_child_w)
        self.pid, self.to_child, self.reader = pid, to_child_w, _Reader(from_child_r)
        self.memory, self.jobs = limits.memory_bytes, 0

    def _log_captured(self, name: str) -> None:
        """Log what the child printed during job ``name`` (debug level), then empty the capture file.

        The child's descriptors 1 and 2 share this file's offset (a fork
        shares open file descriptions), so rewinding it here makes the
        child's next write land at the start again.
        """
        if self.capture is None:
            return
        fd = self.capture.fileno()
        try:
            size = os.fstat(fd).st_size
            if not size:
                return
            data = os.pread(fd, min(size, CAPTURE_LOG_BYTES), 0)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError as exc:  # pragma: no cover - a full or vanished temp folder
            logger.debug("%s: cannot read what the decoders printed: %s", name, exc)
            return
        lines = data.decode("utf-8", "replace").splitlines()
        more = f" (and {size - len(data)} more bytes)" if size > len(data) else ""
        logger.debug("%s: the decoders printed %d line(s)%s:\n%s", name, len(lines), more,
                     "\n".join(f"  {line}" for line in lines))

    def _close_pipes(self) -> None:
        if self.to_child is not None:
            try:
                os.close(self.to_child)
            except OSError:
                pass
        if self.reader is not None:
            self.reader.close()
        self.to_child = self.reader = None

    def _discard(self, grace: float | None = None) -> int:
        """Forget the child (ended, ending, or told to end by its closed pipe); return its wait status.

        ``grace``: seconds a live child may take to exit before it is killed.
        """
        pid, self.pid = self.pid, None  # forgotten first, so an interrupted stop leaves no half state
        self._close_pipes()
        return _reap(pid, grace=grace) if pid is not None else 0

    def _kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._discard()

    def _stop(self) -> None:
        """End the child: closing its job pipe makes it exit; one that does not is killed."""
        self._discard(grace=STOP_GRACE_SECONDS)

    def __del__(self) -> None:
        # The sandbox of a thread that ended: its child would otherwise live until exit.
        try:
            self._stop()
            if self.capture is not None:
                self.capture.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


def shutdown_children() -> None:
    """End every sandbox child of this process (also run at exit)."""
    for sandbox in list(_all_sandboxes):
        sandbox._stop()


def _forget_sandboxes_in_forked_child() -> None:  # pragma: no cover - runs in a forked process
    # A process forked from this one (a sandbox child, or any other fork) must
    # not talk to or reap its parent's children.
    global _all_sandboxes
    _local.__dict__.clear()
    _all_sandboxes = weakref.WeakSet()


atexit.register(shutdown_children)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_sandboxes_in_forked_child)


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
                   reason=f"the process decoding it died ({why}); the file is probably damaged or hostile, "
                          "exclude it")


def _reap(pid: int, grace: float | None = None) -> int:
    """Wait for child ``pid`` and return its wait status; past ``grace`` seconds, kill it first."""
    deadline = None if grace is None else time.monotonic() + grace
    delay = 0.001
    while True:
        try:
            if deadline is None:
                return os.waitpid(pid, 0)[1]
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() >= deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = None  # SIGKILL cannot be ignored: now a plain wait ends
                continue
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
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
def _child_main(read_fd: int, write_fd: int, memory: int | None,
                capture_fd: int) -> None:  # pragma: no cover - child
    code = 0
    try:
        # A crash is reported by the parent as the clip's reason; a Python
        # stack dump of the dying child on stderr would only break the progress bar.
        faulthandler.disable()
        # Whatever native code prints goes to the capture file, which the parent logs at debug
        # level; our own log records go back to the parent with each outcome.
        os.dup2(capture_fd, 1)
        os.dup2(capture_fd, 2)
        records = _forward_log_records()
        _release_inherited_fds(keep=(0, 1, 2, read_fd, write_fd))
        _die_with_parent()
        _cap_memory(memory)
        reader = _Reader(read_fd)
        while True:
            message = reader.next_message(None)
            if message is None:  # the parent closed the pipe: done
                break
            work, name, args, fault = message
            _send(write_fd, (_START, None))
            records.clear()
            outcome = _run_one(name, args, work, fault)
            sys.stdout.flush()
            sys.stderr.flush()
            _send(write_fd, (_DONE, outcome, records))
    except BaseException:  # noqa: BLE001 - the parent sees the exit code and blames the current job
        code = 70
    finally:
        os._exit(code)


class _RecordList(logging.Handler):
    """Keeps the log records of the job running in a sandbox child, ready to be pickled."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The message is rendered here: its arguments may not pickle (a file object, a decoder).
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if len(self.records) < MAX_RECORDS_PER_JOB:
            self.records.append(record)


def _forward_log_records() -> list[logging.LogRecord]:  # pragma: no cover - child only
    """Route the child's log records into a list (instead of its inherited handlers' stderr)."""
    keeper = _RecordList()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(keeper)
    return keeper.records


def _replay(records: Sequence[logging.LogRecord]) -> None:
    """Log a child's records in this process, through this process's handlers."""
    for record in records:
        logging.getLogger(record.name).handle(record)


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


def _release_inherited_fds(keep: Sequence[int]) -> None:  # pragma: no cover - child only
    """Let go of every descriptor the fork copied except ``keep``.

    A forked child holds a copy of each descriptor of its parent: the pipes of
    the other threads' sandboxes (their children then never see the end of
    their job pipe, and stopping them hangs), the worker's sockets to the
    scheduler and to object storage (a connection the parent closes or resets
    stays open while the child lives). Each one is pointed at /dev/null rather
    than closed, so that its number is not reused while some inherited Python
    object may still close it.
    """
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return  # no /proc (not Linux): keep them, as before
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        if fd in keep or fd == devnull:
            continue
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone by now
            os.dup2(devnull, fd, inheritable=False)
    os.close(devnull)


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
        import resource  # POSIX only: the sandbox child caps its address space where it can

        with open("/proc/self/statm") as fh:
            vm_bytes = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm_bytes + extra
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, ImportError):
        pass


def _fault_hook(name: str, spec: str) -> None:
    """The test-only fault injection (see the module docstring); a no-op unless the variable is set."""
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
