"""Remote shells started ahead of time, each waiting before its script until released.

Every remote command starts the remote user's login shell first (0.1 s with a heavy
`.bashrc`). A script run on every poll (the listing), or one a run knows it will soon need
(the tar stream), pays that while nothing waits for it: its shell is started early and
blocks in `read` until released with one line. The script itself runs only when released,
so it sees the remote as it is then. Starting one takes two round trips (the channel's open,
the exec request), so it starts on a thread of its own: over a WAN the caller goes on at once
instead of waiting 0.2 s at 100 ms, and a release waits only for what is left of the start.
Running the script and reading its output is the connection's exec I/O (`connection.py`);
this module only starts, keeps and releases.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable

import paramiko

# A prepared script waits for one line on stdin before it runs; released without it (the
# connection closing), it exits with this status and no output, having run nothing.
NOT_RELEASED = 97
MAX_PREPARED = 2  # shells waiting per connection (sshd allows 10 sessions by default)


def gated(script: str) -> str:
    """Given a sh script, return one that first waits for a line on stdin (exiting with
    NOT_RELEASED, having run nothing, if stdin closes first), then runs the script."""
    return f"IFS= read -r _ || exit {NOT_RELEASED}\n{script}"


# A release waits at most this long for a shell still starting (a stalled connection fails
# its channel opens after 4 keepalives anyway); then the caller starts its own.
MAX_START_WAIT_S = 120.0


class _Starting:
    """One shell: being started on its thread until `done`; then its channel (None if it
    could not be started). `abandoned`: taken out of the pool while starting, so its thread
    closes the channel it gets."""

    __slots__ = ("abandoned", "channel", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.channel: paramiko.Channel | None = None
        self.abandoned = False


class ShellPool:
    """The shells waiting on one connection, at most MAX_PREPARED (the oldest goes first),
    each under the key of whoever will release it. Thread-safe."""

    def __init__(self, start_script: Callable[[str], paramiko.Channel]) -> None:
        """Given how to start a sh script on a new channel of the connection (raising
        paramiko.SSHException, OSError or EOFError), return an empty pool."""
        self._start_script = start_script
        self._waiting: dict[Hashable, _Starting] = {}
        self._lock = threading.Lock()

    def prepare(self, script: str, key: Hashable | None = None, replace: bool = True) -> None:
        """Given a sh script and the key it will be released by (default: the script),
        start its shell (on a thread of its own: this returns at once), replacing one
        waiting under that key (with `replace`; else keeping one that still waits or is
        still starting). A shell that cannot be started is forgotten quietly: the script
        then starts its own when it runs."""
        key = script if key is None else key
        shell = _Starting()
        with self._lock:
            if not replace and _usable(self._waiting.get(key)):
                return
            dropped = [self._waiting.pop(key, None)]
            while len(self._waiting) >= MAX_PREPARED:  # scripts of an older config
                dropped.append(self._waiting.pop(next(iter(self._waiting))))
            self._waiting[key] = shell
        for old in dropped:
            if old is not None:
                self._abandon(old)
        try:
            _spawn(self._start, shell, gated(script))
        except RuntimeError:  # no thread to spare (TasksMax): the script starts its own
            with self._lock:
                if self._waiting.get(key) is shell:
                    del self._waiting[key]
            shell.done.set()

    def discard(self, key: Hashable) -> None:
        """Given a key, close the shell waiting (or starting) under it, if any: it exits
        having run nothing."""
        shell = self._take(key)
        if shell is not None:
            self._abandon(shell)

    def release(self, key: Hashable) -> paramiko.Channel | None:
        """Given a key, let the shell waiting under it run its script and return its channel
        (stdin after the releasing line is the script's); return None if none waits, it could
        not be started, or it went away while waiting, and so can run nothing. A shell still
        starting is waited for."""
        shell = self._take(key)
        if shell is None:
            return None
        if not shell.done.wait(MAX_START_WAIT_S):
            self._abandon(shell)
            return None
        channel = shell.channel
        if channel is None:
            return None
        try:
            if _let_go(channel):
                return channel
        except (paramiko.SSHException, OSError, EOFError):
            pass
        close_quietly(channel)
        return None

    def _start(self, shell: _Starting, script: str) -> None:
        try:
            channel: paramiko.Channel | None = self._start_script(script)
        except Exception:  # SSHException, OSError, EOFError, or a defect: the script starts
            channel = None  # its own shell when it runs
        with self._lock:
            abandoned = shell.abandoned
            if not abandoned:
                shell.channel = channel
            shell.done.set()
        if abandoned and channel is not None:
            close_quietly(channel)

    def _abandon(self, shell: _Starting) -> None:
        """Close a shell taken out of the pool; one still starting is closed by its thread."""
        with self._lock:
            shell.abandoned = True
            channel, shell.channel = shell.channel, None
        if channel is not None:
            close_quietly(channel)

    def _take(self, key: Hashable) -> _Starting | None:
        with self._lock:
            return self._waiting.pop(key, None)


def _spawn(start: Callable[[_Starting, str], None], shell: _Starting, script: str) -> None:
    """Run `start(shell, script)` on a thread of its own. Raise RuntimeError if no thread
    can be started."""
    threading.Thread(target=start, args=(shell, script), name="shell-start", daemon=True).start()


def _usable(shell: _Starting | None) -> bool:
    """Whether a shell in the pool is still starting, or waiting and able to run its script."""
    if shell is None:
        return False
    if not shell.done.is_set():
        return True
    channel = shell.channel
    return channel is not None and not (
        channel.closed or channel.eof_received or channel.exit_status_ready()
    )


def close_quietly(channel: paramiko.Channel | paramiko.SFTPClient) -> None:
    """Close a channel (or the SFTP session on one), whatever became of its connection:
    closing sends a message, and on a connection whose peer just died paramiko raises
    EOFError or OSError from there, which would mask the error being handled (or crash the
    thread that only wanted to clean up)."""
    with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
        channel.close()


def _let_go(channel: paramiko.Channel) -> bool:
    """Release a prepared shell (sh's `read` takes one line); False if it went away while
    waiting and so can run nothing."""
    if channel.closed or channel.eof_received or channel.exit_status_ready():
        return False
    channel.sendall(b"\n")
    return True
