"""The control socket: a Unix stream socket speaking newline-delimited JSON.

Each connection gets its own thread, so a slow, silent or hostile client affects only
itself. Peers are checked with SO_PEERCRED (root, the daemon's user, members of the
socket's group). A line over 1 MiB gets an error and the connection is closed. A `watch`
turns the connection into a progress stream; a reader that stops reading is dropped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from forge_syncd.control.protocol import (
    FORBIDDEN,
    INTERNAL,
    MAX_LINE,
    TOO_LARGE,
    Request,
    RequestError,
    error_line,
    event_line,
    ok_line,
    parse_request,
)
from forge_syncd.logs import get_logger

SEND_TIMEOUT_S = 5.0
REFUSE_WAIT_S = 2.0
IDLE_LIMIT_S = 3600.0
MAX_CLIENTS = 256

# A handler answers one request: it returns the result, or raises RequestError. For
# `watch` it returns an iterator of events instead, streamed until the client goes away.
Handler = Callable[[Request], Any]


class AlreadyRunning(Exception):
    """Another live daemon answers on the socket path."""


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """Return (pid, uid, gid) of the process at the other end of a Unix socket."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


def peer_allowed(uid: int, gid: int, socket_gid: int) -> bool:
    """Root, the daemon's own user and members of the socket's group may connect."""
    if uid in (0, os.getuid()) or gid == socket_gid:
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
        return socket_gid in os.getgrouplist(name, gid)
    except KeyError:
        return False


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody answers on; raise AlreadyRunning if a daemon does."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AlreadyRunning(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: left by a daemon that died
        return
    except OSError as exc:
        raise AlreadyRunning(f"{path}: cannot tell whether a daemon runs there: {exc}") from exc
    finally:
        probe.close()
    raise AlreadyRunning(f"another forge-syncd is already running on {path}")


class ControlServer:
    """Listens on `path` and answers requests with `handler`. `close()` stops it."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.log = get_logger()
        self._clients = threading.BoundedSemaphore(MAX_CLIENTS)
        self._closing = threading.Event()
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        remove_stale_socket(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            self._sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        self._sock.listen(64)
        self.socket_gid = path.stat().st_gid
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(OSError):
            if self.path.is_socket():
                self.path.unlink()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if not self._clients.acquire(blocking=False):
                conn.close()  # too many clients: shed load rather than slow everyone
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(SEND_TIMEOUT_S)
                _pid, uid, gid = peer_credentials(conn)
                if not peer_allowed(uid, gid, self.socket_gid):
                    _refuse(conn, f"uid {uid} may not use this socket")
                    return
                self._converse(conn)
        except OSError:
            pass  # the client went away or stopped reading: its problem only
        finally:
            self._clients.release()

    def _converse(self, conn: socket.socket) -> None:
        for line in _lines(conn, self._closing):
            if line is None:
                conn.sendall(error_line(None, TOO_LARGE, f"request line over {MAX_LINE} bytes"))
                return
            if not line.strip():
                continue
            if not self._answer(conn, line):
                return

    def _answer(self, conn: socket.socket, line: bytes) -> bool:
        """Answer one line; return False when the connection should end (after a watch)."""
        try:
            request = parse_request(line)
            result = self.handler(request)
        except RequestError as exc:
            conn.sendall(error_line(exc.request_id, exc.code, exc.message))
            return True
        except Exception as exc:
            self.log.error("control_request_failed", error=repr(exc))
            conn.sendall(error_line(None, INTERNAL, "internal error; see the daemon's log"))
            return True
        if request.method == "watch":
            self._stream(conn, request, result)
            return False
        conn.sendall(ok_line(request.id, result))
        return True

    def _stream(
        self, conn: socket.socket, request: Request, events: Iterator[dict[str, Any]]
    ) -> None:
        conn.sendall(ok_line(request.id, {"watching": True}))
        for event in events:
            if self._closing.is_set():
                return
            conn.sendall(event_line(event))  # times out for a reader that stopped reading


def _refuse(conn: socket.socket, message: str) -> None:
    """Answer a peer that may not use the socket with `forbidden`, then close.

    The refusal answers the peer's first request (waited for up to REFUSE_WAIT_S): closing
    before the client has sent would turn its send into EPIPE and hide the reason."""
    request_id = None
    conn.settimeout(REFUSE_WAIT_S)
    with contextlib.suppress(OSError):
        first = conn.recv(4096).split(b"\n", 1)[0]
        try:
            request_id = parse_request(first).id
        except RequestError as exc:
            request_id = exc.request_id
    conn.sendall(error_line(request_id, FORBIDDEN, message))


def _lines(conn: socket.socket, closing: threading.Event) -> Iterator[bytes | None]:
    """Yield request lines from `conn`; yield None once for a line over MAX_LINE.

    The socket keeps its short timeout (so a send to a client that stopped reading fails
    fast); a quiet client is waited for up to IDLE_LIMIT_S, checking for shutdown.
    """
    buffer = bytearray()
    idle = 0.0
    while not closing.is_set() and idle < IDLE_LIMIT_S:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            idle += SEND_TIMEOUT_S
            continue
        if not chunk:
            return
        idle = 0.0
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            if end > MAX_LINE:
                yield None
                return
            yield bytes(buffer[:end])
            del buffer[: end + 1]
        if len(buffer) > MAX_LINE:
            yield None
            return
