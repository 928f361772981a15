"""A client of the control socket, for forge-syncctl and tests."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge_syncd.control.protocol import MAX_LINE


class DaemonUnreachable(Exception):
    """Nothing answers on the socket; the message names the path and why."""


class CallFailed(Exception):
    """The daemon answered with an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
        """Send one request and return its result; raise CallFailed on an error response."""
        self._sock.settimeout(timeout)
        request_id = next(self._ids)
        self._send({"id": request_id, "method": method, "params": params or {}})
        response = self._receive()
        if not response.get("ok"):
            error = response.get("error") or {}
            raise CallFailed(str(error.get("code")), str(error.get("message")))
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

    def _receive(self) -> dict[str, Any]:
        try:
            line = self._reader.readline(MAX_LINE)
        except OSError as exc:
            raise DaemonUnreachable(f"lost forge-syncd at {self.path}: {exc}") from None
        if not line:
            raise DaemonUnreachable(f"forge-syncd at {self.path} closed the connection")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise DaemonUnreachable(f"forge-syncd at {self.path} sent {line[:80]!r}")
        return message
