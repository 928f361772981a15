"""A client of the control socket, for forge-syncctl and tests."""

from __future__ import annotations

import contextlib
import grp
import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge_syncd.control.protocol import BUSY, MAX_LINE

# How long a client waits for a line the daemon sent before it closed (a `busy` or
# `forbidden` answer that came before the request could be sent).
LEFTOVER_WAIT_S = 2.0


class DaemonUnreachable(Exception):
    """Nothing answers on the socket; the message names the path and why."""


class DaemonBusy(DaemonUnreachable):
    """The daemon took the connection but cannot serve it now: every control connection is
    in use (it answered `busy`), or it did not answer within the timeout. forge-syncctl
    treats it as unreachable (exit 3), with this message rather than "lost"."""


class CallFailed(Exception):
    """The daemon answered with an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def permission_hint(path: Path) -> str:
    """Given a socket this user may not open, return who may: root and the members of its
    group (`control.group`), and how to become one."""
    try:
        group = grp.getgrgid(path.stat().st_gid).gr_name
    except (OSError, KeyError):
        return " (only root and members of the control socket's group may use it)"
    return (
        f" (only root and members of group {group} may use it:"
        f" sudo usermod -aG {group} $USER, then log in again)"
    )


class ControlClient:
    """One connection to the daemon; any number of requests over it."""

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            reason = exc.strerror or str(exc)
            if isinstance(exc, PermissionError):
                reason += permission_hint(path)
            raise DaemonUnreachable(f"cannot reach forge-syncd at {path}: {reason}") from None
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def interrupt(self) -> None:
        """End a `stream` from a signal handler: the socket is shut down (not closed, so no
        buffered read is torn down under its reader); the stream then ends as at EOF."""
        with contextlib.suppress(OSError):  # already closed or shut down
            self._sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = 30.0
    ) -> Any:
        """Send one request and return its result. Raise CallFailed on an error response,
        DaemonBusy if the daemon answers `busy` or not within `timeout` seconds,
        DaemonUnreachable if the connection is lost."""
        self._sock.settimeout(timeout)
        request_id = next(self._ids)
        try:
            self._send({"id": request_id, "method": method, "params": params or {}})
        except DaemonUnreachable:
            # The daemon may have answered and closed before reading the request (`busy`,
            # `forbidden`): that answer, still in our buffer, says why.
            self._sock.settimeout(LEFTOVER_WAIT_S)
            response = self._leftover()
            if response is None:
                raise
        else:
            response = self._receive(timeout)
        if not response.get("ok"):
            error = response.get("error") or {}
            code, message = str(error.get("code")), str(error.get("message"))
            if code == BUSY:
                raise DaemonBusy(message)
            raise CallFailed(code, message)
        return response.get("result")

    def stream(self, method: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Send a streaming request (`watch`) and yield its events until the daemon stops."""
        self.call(method, params, timeout=30.0)
        self._sock.settimeout(None)
        while True:
            line = self._reader.readline(MAX_LINE)
            if not line:
                return
            yield json.loads(line)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise DaemonUnreachable(f"lost forge-syncd at {self.path}: {exc}") from None

    def _leftover(self) -> dict[str, Any] | None:
        """Return a response line the daemon left before closing, or None."""
        try:
            return self._receive(LEFTOVER_WAIT_S)
        except (DaemonUnreachable, ValueError):
            return None

    def _receive(self, timeout: float | None = None) -> dict[str, Any]:
        try:
            line = self._reader.readline(MAX_LINE)
        except TimeoutError:
            raise DaemonBusy(
                f"forge-syncd at {self.path} took the connection but did not answer within"
                f" {timeout or 0:.0f} s: it is busy; try again"
            ) from None
        except OSError as exc:
            raise DaemonUnreachable(f"lost forge-syncd at {self.path}: {exc}") from None
        if not line:
            raise DaemonUnreachable(f"forge-syncd at {self.path} closed the connection")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise DaemonUnreachable(f"forge-syncd at {self.path} sent {line[:80]!r}")
        return message
