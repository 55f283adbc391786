"""The sandbox children of pipeline.isolation: what they inherit and how they end.

A sandbox child is forked from a process that has other threads, other
sandboxes and open sockets (a Dask worker, a build writing to S3). These tests
pin down that the fork's copies of those descriptors do not outlive their
owners, and that no child outlives its sandbox.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading

import pytest

from pipeline import isolation
from pipeline.isolation import Job, run_isolated

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the sandbox forks (POSIX only)")


def _echo(value):
    return value


def _run_in_thread(ready: threading.Event, release: threading.Event, pids: list[int]) -> None:
    assert run_isolated([Job("b", ("b",))], _echo)[0].value == "b"
    pids.append(isolation._sandbox_of_this_thread().pid)
    ready.set()
    release.wait(30)


def test_a_child_ends_when_told_although_another_threads_child_was_forked_after_it():
    """The later child must not hold a copy of the earlier child's job pipe (it would never see its end)."""
    assert run_isolated([Job("a", ("a",))], _echo)[0].value == "a"
    mine = isolation._sandbox_of_this_thread()
    pid = mine.pid
    ready, release, other = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=_run_in_thread, args=(ready, release, other))
    thread.start()
    try:
        assert ready.wait(30)
        assert other[0] != pid
        mine.pid = None
        mine._close_pipes()
        status = isolation._reap(pid, grace=10)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "the child had to be killed"
    finally:
        release.set()
        thread.join(30)
    # the sandbox forks a fresh child on its next job
    assert run_isolated([Job("c", ("c",))], _echo)[0].value == "c"


def test_a_socket_the_parent_closes_is_closed_for_its_peer_while_a_child_lives():
    """A forked child must not keep the parent's connections open (S3, the scheduler)."""
    ours, peer = socket.socketpair()
    peer.settimeout(10)
    try:
        isolation._sandbox_of_this_thread()._stop()  # the next job forks with `ours` open
        assert run_isolated([Job("a", ("a",))], _echo)[0].value == "a"
        ours.close()
        assert peer.recv(16) == b""  # end of stream, not a time-out
    finally:
        peer.close()


def test_the_child_of_a_finished_thread_is_reaped():
    pids: list[int] = []

    def one_job() -> None:
        assert run_isolated([Job("a", ("a",))], _echo)[0].value == "a"
        pids.append(isolation._sandbox_of_this_thread().pid)

    thread = threading.Thread(target=one_job)
    thread.start()
    thread.join(30)
    gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # already reaped by the sandbox's finalizer


def test_a_stop_that_is_interrupted_leaves_a_usable_sandbox(monkeypatch):
    """Whatever interrupts a stop (a test time-out, KeyboardInterrupt), the next job still runs."""
    assert run_isolated([Job("a", ("a",))], _echo)[0].value == "a"

    def interrupted(pid, grace=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(isolation, "_reap", interrupted)
    with pytest.raises(KeyboardInterrupt):
        isolation._sandbox_of_this_thread()._stop()
    monkeypatch.undo()
    out = run_isolated([Job("b", ("b",))], _echo)  # the same limits: no reason to fork again but the stop
    assert out[0].ok and out[0].value == "b"


def _chatter(name):
    """What a native decoder does: write to the process's descriptors 1 and 2, then log a line of ours."""
    os.write(2, f"Note: Skipped 1024 bytes in input ({name})\n".encode())
    os.write(1, b"ffmpeg says something on stdout\n")
    logging.getLogger("pipeline.dsp.audio").warning("%s: our own warning", name)
    return name


def test_native_output_of_a_clip_is_captured_and_logged_at_debug_level(capfd, caplog):
    """Nothing a decoder prints reaches the terminal; it is in the debug log with the clip's name,
    and our own log records of the child come back through this process's handlers."""
    isolation._sandbox_of_this_thread()._stop()  # a child forked under this test's log capture
    caplog.set_level(logging.DEBUG, logger="pipeline")
    out = run_isolated([Job("rock/a.mp3", ("rock/a.mp3",)), Job("rock/b.mp3", ("rock/b.mp3",))], _chatter)
    assert [o.value for o in out] == ["rock/a.mp3", "rock/b.mp3"]
    printed = capfd.readouterr()
    assert "Skipped 1024 bytes" not in printed.err and "ffmpeg says" not in printed.out
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name == "pipeline.isolation"]
    for name in ("rock/a.mp3", "rock/b.mp3"):
        # each clip's own output, under its own name, and only its own (the capture is emptied per clip)
        mine = [m for m in debug if m.startswith(f"{name}: the decoders printed")]
        assert len(mine) == 1 and f"Skipped 1024 bytes in input ({name})" in mine[0]
        assert "ffmpeg says something on stdout" in mine[0]
    assert "(rock/a.mp3)" not in [m for m in debug if m.startswith("rock/b.mp3")][0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "our own warning" in r.getMessage()]
    assert [r.getMessage() for r in warnings] == ["rock/a.mp3: our own warning", "rock/b.mp3: our own warning"]
    assert all(r.process != os.getpid() for r in warnings)  # made in the child, handled here
