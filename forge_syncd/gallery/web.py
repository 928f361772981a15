"""What wraps every response: HTTP basic auth (when configured), security headers (a
Content-Security-Policy without inline scripts, no sniffing, no framing, no referrer), the
time the app took to start the response (`Server-Timing: app;dur=<ms>`) and the gallery's
own metrics, served at `/metrics`."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; img-src 'self'; media-src 'self'; script-src 'self'; style-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
ROUTES = (
    "api/search",
    "api/item",
    "api/facets",
    "item",
    "compare",
    "events",
    "thumb",
    "file",
    "static",
    "metrics",
)


def route_of(path: str) -> str:
    """A bounded label for a request path (metrics)."""
    if path == "/":
        return "grid"
    inner = path.strip("/")
    for route in ROUTES:
        if inner == route or inner.startswith(route + "/"):
            return route
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "forge_sync_gallery_requests",
            "HTTP requests answered",
            ["route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forge_sync_gallery_request_seconds",
            "time to the start of the response",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.thumbnails = Counter(
            "forge_sync_gallery_thumbnails",
            "thumbnails made, by result",
            ["result"],
            registry=self.registry,
        )

    def thumbnail_made(self, result: str) -> None:
        self.thumbnails.labels(result=result).inc()


def credentials(header: bytes | None) -> tuple[bytes, bytes] | None:
    if header is None or header[:6].lower() != b"basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return None
    return (user, password) if sep else None


class Guard:
    """The ASGI wrapper: auth, headers, /metrics, request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, auth: tuple[str, str] | None) -> None:
        self.app = app
        self.metrics = metrics
        self.auth = None if auth is None else (auth[0].encode(), auth[1].encode())

    def allowed(self, scope: Scope) -> bool:
        if self.auth is None:
            return True
        headers = dict(scope.get("headers", []))
        given = credentials(headers.get(b"authorization"))
        if given is None:
            return False
        user_ok = secrets.compare_digest(given[0], self.auth[0])
        return secrets.compare_digest(given[1], self.auth[1]) and user_ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(scope["path"])
        started = time.monotonic()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in names]
                took = time.monotonic() - started
                extra.append((b"server-timing", f"app;dur={took * 1000:.1f}".encode()))
                message["headers"] = [*message.get("headers", []), *extra]
                self.metrics.requests.labels(route=route, code=str(message["status"])).inc()
                self.metrics.latency.labels(route=route).observe(took)
            await send(message)

        if not self.allowed(scope):
            await _plain(
                send_with_headers,
                401,
                b"authentication required\n",
                [(b"www-authenticate", b'Basic realm="forge-sync-gallery", charset="UTF-8"')],
            )
        elif scope["method"] not in ("GET", "HEAD"):
            await _plain(
                send_with_headers, 405, b"read-only: GET only\n", [(b"allow", b"GET, HEAD")]
            )
        elif route == "metrics":
            body = generate_latest(self.metrics.registry)
            await _plain(send_with_headers, 200, body, [], CONTENT_TYPE_LATEST.encode())
        else:
            await self.app(scope, receive, send_with_headers)


async def _plain(
    send: Any,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    content_type: bytes = b"text/plain; charset=utf-8",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
