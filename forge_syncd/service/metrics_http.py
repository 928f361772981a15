"""The /metrics HTTP server: bounded threads, bounded time per connection.

prometheus_client's `start_http_server` starts one thread per connection and reads with no
timeout, so every idle local connection pins a daemon thread for ever. Here one thread reads
the request heads of all open connections (an idle connection costs a file descriptor, not a
thread); a connection whose head is not complete within `HEAD_TIMEOUT_S` is closed (however
slowly it trickles bytes); a complete request waits at most `QUEUE_TIMEOUT_S` for one of
`WORKERS` threads, which answer with prometheus_client's own WSGI app, each response's write
bounded by `WRITE_TIMEOUT_S`. At most `MAX_WAITING` connections wait (for their head or for a
worker); past that the oldest is closed.
"""

from __future__ import annotations

import contextlib
import io
import selectors
import socket
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

from forge_syncd.logs import get_logger

HEAD_TIMEOUT_S = 5.0  # a scraper sends its whole request at once
WRITE_TIMEOUT_S = 10.0  # the whole response, not each send (Python's sendall semantics)
MAX_HEAD_BYTES = 64 * 1024
QUEUE_TIMEOUT_S = 10.0  # a complete request waiting for a worker (a scrape's own timeout)
MAX_WAITING = 64  # connections waiting for their request head or for a worker
WORKERS = 2


class _Handler(WSGIRequestHandler):
    """wsgiref's handler, given a `_Waiting` (a connection and its request head, already
    read) as its request; writes with a deadline; logs nothing to stderr."""

    timeout = WRITE_TIMEOUT_S

    def setup(self) -> None:
        """Read the request from the head the server collected, write to the socket."""
        waiting: _Waiting = self.request
        self.request = waiting.sock
        super().setup()
        self.rfile.close()
        self.rfile = io.BytesIO(bytes(waiting.head))

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing per request (Prometheus scrapes every few seconds)."""

    def get_stderr(self) -> io.StringIO:
        """Return a buffer for wsgiref's error tracebacks (never the daemon's stderr)."""
        return io.StringIO()


@dataclass
class _Waiting:
    """A connection whose request head is still arriving (`complete` False, watched by the
    selector) or has arrived and waits for a worker (`complete` True)."""

    sock: socket.socket
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    complete: bool = False


class BoundedWSGIServer(WSGIServer):
    """A WSGI server whose threads and per-connection time are bounded (see the module)."""

    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        """Given a (host, port) and its address family, bind and listen (port 0: any)."""
        self.address_family = family
        super().__init__(address, _Handler)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[_Waiting] = []
        self._waiting: OrderedDict[socket.socket, _Waiting] = OrderedDict()
        self._busy = 0  # requests handed to a worker and not finished
        self._closing = threading.Event()
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="metrics-http")
        self._reader = threading.Thread(target=self._read_heads, name="metrics-heads", daemon=True)
        self._reader.start()

    # -- accept side (serve_forever's thread) ------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        """Given an accepted connection, hand it to the head reader (never block here)."""
        request.setblocking(False)
        waiting = _Waiting(request, client_address, time.monotonic() + HEAD_TIMEOUT_S)
        with self._lock:
            self._incoming.append(waiting)
        self._wake()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a failed request at debug (socketserver would print a traceback to stderr)."""
        error = sys.exc_info()[1]
        get_logger().debug("metrics_request_failed", error=repr(error))

    # -- head reader -------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _read_heads(self) -> None:
        while not self._closing.is_set():
            timeout = self._expire(time.monotonic())
            for key, _events in self._selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(4096)
                else:
                    self._read_from(key.data)
            self._admit()
            self._dispatch()

    def _admit(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for waiting in incoming:
            if self._closing.is_set():
                self._drop(waiting)
                continue
            self._waiting[waiting.sock] = waiting
            self._selector.register(waiting.sock, selectors.EVENT_READ, waiting)
            while len(self._waiting) > MAX_WAITING:
                _sock, oldest = self._waiting.popitem(last=False)
                self._forget(oldest)

    def _expire(self, now: float) -> float:
        """Close connections past their deadline; return the seconds until the next one."""
        for waiting in [w for w in self._waiting.values() if w.deadline <= now]:
            self._waiting.pop(waiting.sock)
            self._forget(waiting)
        return min((w.deadline for w in self._waiting.values()), default=now + 1.0) - now

    def _read_from(self, waiting: _Waiting) -> None:
        try:
            chunk = waiting.sock.recv(MAX_HEAD_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        waiting.head += chunk
        complete = b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head
        if chunk and not complete and len(waiting.head) <= MAX_HEAD_BYTES:
            return
        self._selector.unregister(waiting.sock)
        if not complete:
            self._waiting.pop(waiting.sock)
            self._drop(waiting)
            return
        waiting.complete = True
        waiting.deadline = time.monotonic() + QUEUE_TIMEOUT_S

    def _dispatch(self) -> None:
        """Hand the oldest complete requests to idle workers (never more than WORKERS)."""
        for waiting in [w for w in self._waiting.values() if w.complete]:
            with self._lock:
                if self._busy >= WORKERS or self._closing.is_set():
                    return
                self._busy += 1
            self._waiting.pop(waiting.sock)
            self._workers.submit(self._answer, waiting)

    def _forget(self, waiting: _Waiting) -> None:
        if not waiting.complete:
            self._selector.unregister(waiting.sock)
        self._drop(waiting)

    @staticmethod
    def _drop(waiting: _Waiting) -> None:
        with contextlib.suppress(OSError):
            waiting.sock.close()

    # -- workers -----------------------------------------------------------------------
    def _answer(self, waiting: _Waiting) -> None:
        try:
            _Handler(waiting, waiting.address, self)  # type: ignore[arg-type]
        except Exception:  # one bad client must not end a worker
            self.handle_error(waiting.sock, waiting.address)
        finally:
            self.shutdown_request(waiting.sock)
            with self._lock:
                self._busy -= 1
            self._wake()  # the reader hands over the next waiting request

    # -- stop --------------------------------------------------------------------------
    def server_close(self) -> None:
        """Stop the head reader and the workers; close every connection and the socket."""
        self._closing.set()
        self._wake()
        self._reader.join(timeout=5)
        for waiting in list(self._waiting.values()):
            self._drop(waiting)
        self._waiting.clear()
        self._workers.shutdown(wait=True, cancel_futures=True)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()
        super().server_close()


def start_metrics_server(
    registry: CollectorRegistry, host: str, port: int
) -> tuple[BoundedWSGIServer, threading.Thread]:
    """Given a registry and a listen address, serve /metrics from a daemon thread; return
    the server (`shutdown()` then `server_close()` to stop it) and the thread. Port 0 picks
    a free port (see `server.server_port`). Raise OSError if the address cannot be bound."""
    family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server = BoundedWSGIServer((str(sockaddr[0]), port), family)
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="metrics-accept", daemon=True)
    thread.start()
    return server, thread
