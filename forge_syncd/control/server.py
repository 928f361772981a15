"""The control socket: a Unix stream socket speaking newline-delimited JSON.

Each connection gets its own thread, so a slow, silent or hostile client affects only
itself; at most MAX_CLIENTS at once. A client that sends no request for IDLE_LIMIT_S (none
yet, or none since its last answer) is dropped, so silent connections cannot hold every
slot; a `watch` stream is not idle. When every slot is taken, a new client is answered
`busy` and closed (no thread), and `control_clients_full` is logged once for the burst.
Peers are checked with SO_PEERCRED (root, the daemon's user, members of the socket's
group). A line over 1 MiB gets an error and the connection is closed. A `watch` turns the
connection into a progress stream; a reader that stops reading is dropped.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from forge_syncd.control.methods import METHODS
from forge_syncd.control.protocol import (
    BUSY,
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
IDLE_LIMIT_S = 30.0
MAX_CLIENTS = 256
# The test suite shortens IDLE_LIMIT_S for a real daemon with this (seconds); nothing else
# should set it.
TEST_IDLE_ENV = "FORGE_SYNCD_TEST_CONTROL_IDLE_S"

# A handler answers one request: it returns the result, or raises RequestError. For a
# method that `streams` (`watch`) it returns an iterator of events instead, streamed until
# the client goes away.
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


def default_idle_limit_s() -> float:
    """Return IDLE_LIMIT_S, or the test suite's limit from TEST_IDLE_ENV."""
    try:
        return float(os.environ.get(TEST_IDLE_ENV) or IDLE_LIMIT_S)
    except ValueError:
        return IDLE_LIMIT_S


class ControlServer:
    """Listens on `path` and answers requests with `handler`, `max_clients` connections at
    once, each dropped after `idle_limit_s` without a request. `close()` stops it."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        idle_limit_s: float | None = None,
        max_clients: int = MAX_CLIENTS,
        group: str | None = None,
    ) -> None:
        """`group`: the socket's group (`control.group`); None, or a group that does not
        exist or this process cannot give (logged once), keeps the process's own."""
        self.path = path
        self.handler = handler
        self.log = get_logger()
        self.idle_limit_s = default_idle_limit_s() if idle_limit_s is None else idle_limit_s
        self.max_clients = max_clients
        self._slots = threading.Lock()
        self._clients = 0
        self._refused = 0  # clients turned away in the current burst
        self._closing = threading.Event()
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        remove_stale_socket(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)  # the socket is born 0660, never briefly wider
        try:
            self._sock.bind(str(path))
            # Listening at once: a client that sees the socket file never meets a refused
            # connection while the group is given (born 0660 already: nothing is wider).
            self._sock.listen(64)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        if group is not None:
            self._give_group(group)
        self.socket_gid = path.stat().st_gid
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)

    def _give_group(self, group: str) -> None:
        """Give the socket to `group`, whose members may use it. When that cannot be
        done, it keeps the daemon's group: root and the daemon's user still get in."""
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            self.log.warning(
                "control_group_missing",
                group=group,
                error=f"no group {group!r}: the control socket keeps the daemon's group"
                f" (create it: groupadd {group}, add the daemon's user and operators to it)",
            )
            return
        try:
            os.chown(self.path, -1, gid)
        except OSError as exc:
            self.log.warning(
                "control_group_refused",
                group=group,
                error=f"cannot give the control socket to group {group!r} ({exc.strerror}):"
                " it keeps the daemon's group; the daemon's user must be a member of it",
            )

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
            if not self._take_slot():
                _turn_away(conn, self.max_clients)  # shed load rather than slow everyone
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had (a process at its task limit)
                self._release_slot()
                _turn_away(conn, self.max_clients)

    def _take_slot(self) -> bool:
        """Count a new client in; return False if every slot is taken. The first client
        turned away in a burst is logged (`control_clients_full`), not every one."""
        with self._slots:
            if self._clients < self.max_clients:
                self._clients += 1
                return True
            self._refused += 1
            first = self._refused == 1
        if first:
            self.log.warning(
                "control_clients_full",
                clients=self.max_clients,
                error=f"all {self.max_clients} control connections are in use",
            )
        return False

    def _release_slot(self) -> None:
        """Count a client out. A burst of refusals ends once half the slots are free again
        (so clients coming and going at the limit make one record, not one each)."""
        with self._slots:
            self._clients -= 1
            refused = self._refused
            ended = refused > 0 and self._clients <= self.max_clients // 2
            if ended:
                self._refused = 0
        if ended:
            self.log.info("control_clients_available", refused=refused)

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
            self._release_slot()

    def _converse(self, conn: socket.socket) -> None:
        for line in _lines(conn, self._closing, self.idle_limit_s):
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
        if METHODS[request.method].streams:
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


def _turn_away(conn: socket.socket, max_clients: int) -> None:
    """Answer a client no slot is left for with `busy`, then close, in the accept loop.

    The line is sent at once, without waiting for the client's request (that would need a
    thread): it fits the new socket's empty buffer, and the client reads it even when its
    own send then fails (ControlClient does)."""
    message = f"forge-syncd is busy: all {max_clients} control connections are in use; try again"
    with conn:
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.sendall(error_line(None, BUSY, message))


def _lines(
    conn: socket.socket, closing: threading.Event, idle_limit_s: float
) -> Iterator[bytes | None]:
    """Yield request lines from `conn`; yield None once for a line over MAX_LINE. Stop when
    the client closes, or sends no request for `idle_limit_s` (counted from the connection,
    then from each answer: the caller answers a line before asking for the next; blank
    lines and a request still coming in do not count).

    Between reads the socket keeps its short timeout (so a send to a client that stopped
    reading fails fast); reads wait at most SEND_TIMEOUT_S at a time, checking for shutdown.
    """
    buffer = bytearray()
    deadline = time.monotonic() + idle_limit_s
    while not closing.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return  # idle: the slot goes to someone else
        conn.settimeout(min(SEND_TIMEOUT_S, left))
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        finally:
            conn.settimeout(SEND_TIMEOUT_S)
        if not chunk:
            return
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            if end > MAX_LINE:
                yield None
                return
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            yield line
            if line.strip():
                deadline = time.monotonic() + idle_limit_s
        if len(buffer) > MAX_LINE:
            yield None
            return
