"""The pool of remote shells started ahead of time (`transports/ssh/shells.py`), with a fake channel:
a shell starts on a thread of its own (two round trips the caller does not wait for), a
release waits for what is left of its start, and a shell taken out of the pool while it
starts is closed once started, never leaked."""

from __future__ import annotations

import threading
import time

import paramiko
import pytest

import forge_syncd.transports.ssh.shells
from forge_syncd.transports.ssh.shells import MAX_PREPARED, ShellPool, gated
from tests.support.daemon import wait_until


class FakeChannel:
    """What the pool reads and does on a channel: its state, the releasing line, close."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.closed = False
        self.eof_received = False
        self.sent = b""

    def exit_status_ready(self) -> bool:
        return False

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError("closed")
        self.sent += data

    def close(self) -> None:
        self.closed = True


class Starter:
    """`start_script` for the pool: each start blocks until `go` is set (a slow link), then
    returns a FakeChannel, or raises `error` if set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.started: list[FakeChannel] = []
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self, script: str) -> paramiko.Channel:
        self.calls += 1
        assert self.go.wait(10), "the test never let the start finish"
        if self.error is not None:
            raise self.error
        channel = FakeChannel(script)
        self.started.append(channel)
        return channel  # type: ignore[return-value]


def test_prepare_returns_before_the_shell_has_started() -> None:
    """prepare() does not wait for the channel's round trips; the start runs meanwhile."""
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("ls")  # would block for 10 s, and then fail, if it started here
    wait_until(lambda: starter.calls == 1, 10, "the start on its own thread")
    assert starter.started == []
    starter.go.set()
    wait_until(lambda: len(starter.started) == 1, 10, "the started shell")
    assert starter.started[0].script == gated("ls")


def test_a_release_waits_for_a_shell_still_starting_and_lets_it_go() -> None:
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("ls")
    got: list[object] = []
    releasing = threading.Thread(target=lambda: got.append(pool.release("ls")))
    releasing.start()
    time.sleep(0.2)
    assert releasing.is_alive() and got == []  # waits for the start, not None at once
    starter.go.set()
    releasing.join(10)
    (channel,) = starter.started
    assert got == [channel] and channel.sent == b"\n" and not channel.closed


def test_a_shell_that_cannot_start_releases_as_none() -> None:
    """The caller then starts its own; nothing is left in the pool."""
    starter = Starter()
    starter.error = paramiko.SSHException("channel open refused")
    starter.go.set()
    pool = ShellPool(starter)
    pool.prepare("ls")
    assert pool.release("ls") is None
    assert pool.release("ls") is None and starter.calls == 1


def test_a_shell_discarded_while_starting_is_closed_once_started() -> None:
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("ls")
    wait_until(lambda: starter.calls == 1, 10, "the start")
    pool.discard("ls")
    starter.go.set()
    wait_until(lambda: len(starter.started) == 1 and starter.started[0].closed, 10, "closed")
    assert pool.release("ls") is None


def test_replace_closes_the_old_shell_and_keep_keeps_one_still_starting() -> None:
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("tar", key="k")
    pool.prepare("tar", key="k", replace=False)  # one is starting: kept, no second start
    starter.go.set()
    wait_until(lambda: len(starter.started) == 1, 10, "the first shell")
    time.sleep(0.1)
    assert starter.calls == 1
    first = starter.started[0]
    pool.prepare("tar", key="k")  # replace: the waiting one goes
    wait_until(lambda: len(starter.started) == 2, 10, "the second shell")
    assert first.closed
    assert pool.release("k") is starter.started[1]


def test_keep_starts_anew_when_the_waiting_shell_went_away() -> None:
    starter = Starter()
    starter.go.set()
    pool = ShellPool(starter)
    pool.prepare("tar", key="k")
    wait_until(lambda: len(starter.started) == 1, 10, "the shell")
    starter.started[0].eof_received = True  # its shell exited while waiting
    pool.prepare("tar", key="k", replace=False)
    wait_until(lambda: len(starter.started) == 2, 10, "a new shell")
    assert starter.started[0].closed and pool.release("k") is starter.started[1]


def test_at_most_max_prepared_the_oldest_closed_even_while_starting() -> None:
    starter = Starter()
    pool = ShellPool(starter)
    scripts = [f"script {n}" for n in range(MAX_PREPARED + 2)]
    for script in scripts:
        pool.prepare(script)
    starter.go.set()
    wait_until(lambda: len(starter.started) == len(scripts), 10, "every start")
    kept = scripts[-MAX_PREPARED:]
    time.sleep(0.1)
    by_script = {channel.script: channel for channel in starter.started}
    assert [s for s in scripts if by_script[gated(s)].closed] == scripts[:-MAX_PREPARED]
    for script in kept:
        assert pool.release(script) is by_script[gated(script)]


def test_a_release_gives_up_on_a_start_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_START_WAIT_S the caller starts its own; the late shell is closed."""
    monkeypatch.setattr(forge_syncd.transports.ssh.shells, "MAX_START_WAIT_S", 0.2)
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("ls")
    assert pool.release("ls") is None
    starter.go.set()
    wait_until(lambda: len(starter.started) == 1 and starter.started[0].closed, 10, "closed")


def test_no_thread_to_spare_leaves_nothing_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process at its task limit cannot start the thread: prepare() returns quietly (the
    run goes on), nothing is left in the pool, and the script starts its own shell."""

    def no_thread(*_args: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(forge_syncd.transports.ssh.shells, "_spawn", no_thread)
    starter = Starter()
    pool = ShellPool(starter)
    pool.prepare("ls")
    assert pool.release("ls") is None and starter.calls == 0
