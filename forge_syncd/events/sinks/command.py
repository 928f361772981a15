"""`exec`: run a command with the event JSON on stdin; exit 0 means delivered.

The command's own exit decides, within its timeout: a background child it leaves behind
holding stdout or stderr open neither delays nor fails the delivery. The command runs in
its own process group; on timeout the whole group is killed and the delivery fails. At
most `STDERR_KEPT` bytes of its stderr are kept (the tail), for the error message; its
stdout is discarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from typing import Any

STDERR_KEPT = 64 * 1024
ERROR_TAIL_CHARS = 300
# Without a pidfd (old kernels, some sandboxes) the exit is noticed by polling this often.
POLL_S = 0.05
# After the command exited, what it wrote before is still in the pipe: read at most this.
DRAIN_MAX = 1024 * 1024


class CommandTimedOut(Exception):
    """The command did not exit within its timeout; its process group was killed."""


class CommandFailed(Exception):
    """The command exited non-zero or by a signal; the message holds its stderr's tail."""


def child_environment() -> dict[str, str]:
    """Return our environment without what would let the child talk to systemd in our
    name."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }


class _Exchange:
    """One run of the command: feeds stdin, keeps stderr's tail, notices the exit."""

    def __init__(self, process: subprocess.Popen[bytes], payload: bytes) -> None:
        assert process.stdin is not None and process.stderr is not None
        self.process = process
        self.payload = memoryview(payload)
        self.stdin_fd = process.stdin.fileno()
        self.stderr_fd = process.stderr.fileno()
        self.stderr = bytearray()
        self.selector = selectors.DefaultSelector()
        os.set_blocking(self.stdin_fd, False)
        os.set_blocking(self.stderr_fd, False)
        self.selector.register(self.stderr_fd, selectors.EVENT_READ)
        self.selector.register(self.stdin_fd, selectors.EVENT_WRITE)
        self.pidfd = self._open_pidfd()

    def _open_pidfd(self) -> int | None:
        try:
            pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            return None
        self.selector.register(pidfd, selectors.EVENT_READ)
        return pidfd

    def run_until(self, deadline: float) -> int | None:
        """Exchange data until the command exits (return its exit status) or the
        deadline passes (return None)."""
        while (code := self.process.poll()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait = left if self.pidfd is not None else min(left, POLL_S)
            for key, _ in self.selector.select(wait):
                if key.fd == self.stdin_fd:
                    self._write_stdin()
                elif key.fd == self.stderr_fd:
                    self._read_stderr(STDERR_KEPT)
        self._read_stderr(DRAIN_MAX)
        return code

    def _write_stdin(self) -> None:
        try:
            sent = os.write(self.stdin_fd, self.payload[:65536])
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin (EPIPE): its exit decides
            sent = len(self.payload)
        self.payload = self.payload[sent:]
        if not self.payload:
            self.selector.unregister(self.stdin_fd)
            self._close_stdin()

    def _close_stdin(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()

    def _read_stderr(self, limit: int) -> None:
        """Read what stderr has now, up to `limit` bytes, keeping the last STDERR_KEPT;
        at end of file, stop watching it."""
        taken = 0
        while taken < limit:
            try:
                chunk = os.read(self.stderr_fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                if self.stderr_fd in self.selector.get_map():
                    self.selector.unregister(self.stderr_fd)
                return
            taken += len(chunk)
            self.stderr += chunk
            del self.stderr[:-STDERR_KEPT]

    def close(self) -> None:
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        self._close_stdin()
        assert self.process.stderr is not None
        self.process.stderr.close()


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command's process group (it leads its own session) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


def run_command(command: list[str], payload: bytes, timeout_s: float) -> tuple[int, bytes]:
    """Given a command, what to write to its stdin and a timeout, run it; return its exit
    status and the tail of its stderr (at most STDERR_KEPT bytes) once the command itself
    has exited, whatever its children keep open. Raise CommandTimedOut (after killing its
    process group) when it runs longer than `timeout_s`; OSError when it cannot start."""
    deadline = time.monotonic() + timeout_s
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=child_environment(),
        start_new_session=True,
    )
    exchange = _Exchange(process, payload)
    try:
        code = exchange.run_until(deadline)
        if code is None:
            kill_group(process)
            raise CommandTimedOut(f"{command[0]} still running after {timeout_s:g} s: killed")
        return code, bytes(exchange.stderr)
    finally:
        exchange.close()


class ExecSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.command = list(options["command"])
        self.timeout_s = float(options.get("timeout_s", 30.0))

    def deliver(self, event: dict[str, Any]) -> None:
        """Given an event, run the command with its JSON on stdin; return when it exited 0.
        Raise CommandFailed (non-zero exit), CommandTimedOut or OSError otherwise."""
        code, stderr = run_command(self.command, json.dumps(event).encode(), self.timeout_s)
        if code != 0:
            tail = stderr.decode("utf-8", "replace").strip()[-ERROR_TAIL_CHARS:]
            how = f"exited {code}" if code > 0 else f"was killed by signal {-code}"
            raise CommandFailed(f"{self.command[0]} {how}: {tail}")

    def close(self) -> None:
        pass
