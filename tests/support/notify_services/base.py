"""What the fake notification services share: an HTTP server on 127.0.0.1 in a thread, the
record of each request with its body parsed (JSON, urlencoded or multipart form), injected
failures and a service that goes down and comes back on the same port."""

from __future__ import annotations

import contextlib
import email.header
import email.parser
import email.policy
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

MAX_REQUEST = 64 * 1024 * 1024  # bytes of body the fakes read at most (413 beyond)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str
    data: bytes


@dataclass
class Request:
    """One request as a fake received it, and what it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased; values decoded from RFC 2047 when encoded
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    status: int = 0

    def param(self, *names: str) -> str | None:
        """Return the first of `names` found in the headers, the query or the form."""
        for name in names:
            for source in (self.headers, self.query, self.form):
                if name.lower() in source:
                    return source[name.lower()]
        return None


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serializable, or bytes, or None for no body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    status: int
    retry_after: float | None


def _decode_header(value: str) -> str:
    if "=?" not in value:
        return value
    with contextlib.suppress(Exception):
        return str(email.header.make_header(email.header.decode_header(value)))
    return value


def parse_body(content_type: str, body: bytes) -> tuple[Any, dict[str, str], dict[str, Upload]]:
    """Given a Content-Type and a body, return (JSON, form fields, files) as far as they parse
    (a body that does not parse leaves them empty)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            return json.loads(body), {}, {}
        except (ValueError, UnicodeDecodeError):
            return None, {}, {}
    if kind == "application/x-www-form-urlencoded":
        pairs = urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return None, dict(pairs), {}
    if kind == "multipart/form-data":
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        files: dict[str, Upload] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            filename = part.get_filename()
            if filename is None and part.get_content_type() in ("text/plain", "application/json"):
                fields[name] = payload.decode("utf-8", "replace")
            else:
                files[name] = Upload(filename, part.get_content_type(), payload)
        return None, fields, files
    return None, {}, {}


class FakeService:
    """The HTTP machinery the fakes share; a subclass implements `answer` and `failure`."""

    name = "service"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.messages: list[dict[str, Any]] = []
        self.port = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._faults: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._released = threading.Event()
        self._released.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeService:
        """Listen on 127.0.0.1 (a free port the first time, the same one after `go_down`)."""
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                service._handle(self)

            do_POST = do_PUT = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns within 50 ms
            name=f"fake-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end the thread; idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    go_down = stop

    def come_up(self) -> FakeService:
        """Listen again on the same port after `go_down`."""
        return self.start()

    def __enter__(self) -> FakeService:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def fail_next(self, count: int = 1, status: int = 429, retry_after: float | None = 1.0) -> None:
        """Make the next `count` requests fail: `status` 429 (with `retry_after` seconds in
        the service's own form), 500 or another error, or 0 to close the connection without
        an answer."""
        with self._lock:
            self._faults += [_Fault(status, retry_after) for _ in range(count)]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Request]:
        """Wait until `count` requests have come; return them. Raise TimeoutError after
        `timeout` seconds (a bound, not a measurement)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {len(self.requests)} of {count} requests")
                self._arrived.wait(left)
            return list(self.requests)

    def hold(self) -> None:
        """Keep the answers of the requests from now on until `release()`."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError

    def failure(self, status: int, retry_after: float | None) -> Reply:
        """Return the service's answer for an injected failure of `status`."""
        raise NotImplementedError

    def next_id(self) -> int:
        return next(self._ids)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            handler.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            handler.close_connection = True
            return
        body = handler.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(handler.path)
        content_type = handler.headers.get("Content-Type", "")
        parsed, form, files = parse_body(content_type, body)
        request = Request(
            method=handler.command,
            path=urllib.parse.unquote(split.path),
            query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): _decode_header(v) for k, v in handler.headers.items()},
            body=body,
            json=parsed,
            form=form,
            files=files,
        )
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault.status == 0:
            self._record(request)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)
            return
        with self._lock:  # one answer at a time: message ids and records stay in order
            reply = self.failure(fault.status, fault.retry_after) if fault else self.answer(request)
        request.status = reply.status
        self._record(request)
        self._released.wait(timeout=60)
        with contextlib.suppress(OSError):
            self._send(handler, reply)

    def _record(self, request: Request) -> None:
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.body is None:
            data = b""
        elif isinstance(reply.body, bytes):
            data = reply.body
        else:
            data = json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        if reply.body is not None and not isinstance(reply.body, bytes):
            handler.send_header("Content-Type", "application/json")
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if data and handler.command != "HEAD":
            handler.wfile.write(data)
