"""Remote shells started ahead of time, each waiting before its script until released.

Every remote command starts the remote user's login shell first (0.1 s with a heavy
`.bashrc`). A script run on every poll (the listing), or one a run knows it will soon need
(the tar stream), pays that while nothing waits for it: its shell is started early and
blocks in `read` until released with one line. The script itself runs only when released,
so it sees the remote as it is then. Running the script and reading its output is the
connection's exec I/O (`connection.py`); this module only starts, keeps and releases.
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


class ShellPool:
    """The shells waiting on one connection, at most MAX_PREPARED (the oldest goes first),
    each under the key of whoever will release it. Thread-safe."""

    def __init__(self, start_script: Callable[[str], paramiko.Channel]) -> None:
        """Given how to start a sh script on a new channel of the connection (raising
        paramiko.SSHException, OSError or EOFError), return an empty pool."""
        self._start_script = start_script
        self._waiting: dict[Hashable, paramiko.Channel] = {}
        self._lock = threading.Lock()

    def prepare(self, script: str, key: Hashable | None = None, replace: bool = True) -> None:
        """Given a sh script and the key it will be released by (default: the script),
        start its shell now, replacing one already waiting under that key (with `replace`;
        else keeping it if it still waits). If the shell cannot be started, return quietly:
        the script then starts its own when it runs."""
        if not replace:
            with self._lock:
                waiting = self._waiting.get(script if key is None else key)
            if waiting is not None and not (
                waiting.closed or waiting.eof_received or waiting.exit_status_ready()
            ):
                return
        try:
            channel = self._start_script(gated(script))
        except (paramiko.SSHException, OSError, EOFError):
            return
        key = script if key is None else key
        with self._lock:
            dropped = [self._waiting.pop(key, None)]
            while len(self._waiting) >= MAX_PREPARED:  # scripts of an older config
                dropped.append(self._waiting.pop(next(iter(self._waiting))))
            self._waiting[key] = channel
        for old in dropped:
            if old is not None:
                close_quietly(old)

    def discard(self, key: Hashable) -> None:
        """Given a key, close the shell waiting under it, if any (it exits having run nothing)."""
        channel = self._take(key)
        if channel is not None:
            close_quietly(channel)

    def release(self, key: Hashable) -> paramiko.Channel | None:
        """Given a key, let the shell waiting under it run its script and return its channel
        (stdin after the releasing line is the script's); return None if none waits or it
        went away while waiting, and so can run nothing."""
        channel = self._take(key)
        if channel is None:
            return None
        try:
            if _let_go(channel):
                return channel
        except (paramiko.SSHException, OSError, EOFError):
            pass
        close_quietly(channel)
        return None

    def _take(self, key: Hashable) -> paramiko.Channel | None:
        with self._lock:
            return self._waiting.pop(key, None)


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
