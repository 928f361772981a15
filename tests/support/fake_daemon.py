"""A stand-in for forge-syncd on a real Unix socket, for the CLI's side of the control
protocol: it answers `hello` with the answer it is given, refuses every other request with
`failed` (so a command stops right after its first call), and keeps every request line."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

REFUSAL = "the fake daemon answers only hello"


class FakeDaemon:
    """Listens on `path` (a connection a thread, any number of requests on each) until
    `close()`. `requests`: every request received, as sent, in order of arrival."""

    def __init__(self, path: Path, hello: dict[str, object]) -> None:
        self.path = path
        self.hello = hello
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError), conn.makefile("rb") as lines:
            for line in lines:
                with self._lock:
                    self.requests.append(line)
                conn.sendall(json.dumps(self.answer(json.loads(line))).encode() + b"\n")

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("method") == "hello":
            return {"id": request.get("id"), "ok": True, "result": self.hello}
        error = {"code": "failed", "message": REFUSAL}
        return {"id": request.get("id"), "ok": False, "error": error}

    def sent(self) -> list[dict[str, Any]]:
        """The requests received so far, decoded."""
        with self._lock:
            return [json.loads(line) for line in self.requests]

    def close(self) -> None:
        self.sock.close()
