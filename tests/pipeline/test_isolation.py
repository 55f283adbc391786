"""The sandbox children of pipeline.isolation: what they inherit and how they end.

A sandbox child is forked from a process that has other threads, other
sandboxes and open sockets (a Dask worker, a build writing to S3). These tests
pin down that the fork's copies of those descriptors do not outlive their
owners, and that no child outlives its sandbox.
"""

from __future__ import annotations

import gc
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
