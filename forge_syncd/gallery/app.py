"""The gallery's web application (Starlette): pages, JSON API, thumbnails, files, events.

Every handler that touches the catalog or a file is a plain function, run in Starlette's
thread pool (SQLite and file reads block); `/events` polls the catalog's change numbers.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from forge_syncd.gallery import pages, posters
from forge_syncd.gallery.api import PAGE, BadRequest, encode_cursor, search_query
from forge_syncd.gallery.events import event_stream
from forge_syncd.gallery.files import Refused, open_listed, parse_range, read_span
from forge_syncd.gallery.source import CatalogReader, CatalogUnavailable
from forge_syncd.gallery.thumbs import SHA256, Thumbnails, file_sha256

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"gallery.js": "text/javascript", "gallery.css": "text/css"}
IMMUTABLE = "public, max-age=31536000, immutable"
MAX_STREAMS = 32


LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Json(JSONResponse):
    """JSON that may carry a lone surrogate (the byte of a `local_path` that is not UTF-8,
    kept with surrogate escapes): shown as U+FFFD, valid UTF-8, never a 500."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


class Html(HTMLResponse):
    """HTML, a lone surrogate in it shown as U+FFFD (as Json)."""

    def render(self, content: Any) -> bytes:
        return LONE_SURROGATE.sub("\ufffd", str(content)).encode("utf-8")


class Hashes:
    """sha256 of files whose rows record none, by (id, local_path, size, mtime); bounded."""

    def __init__(self, most: int = 100_000) -> None:
        self.most = most
        self._known: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> str | None:
        with self._lock:
            return self._known.get(key)

    def put(self, key: tuple[Any, ...], sha: str) -> None:
        with self._lock:
            self._known[key] = sha
            while len(self._known) > self.most:
                self._known.popitem(last=False)


@dataclass
class Gallery:
    catalog: CatalogReader
    thumbs: Thumbnails
    media_root: Path
    hashes: Hashes = field(default_factory=Hashes)


def problem(status: int, words: str, html: bool = False) -> Response:
    if html:
        return Html(pages.message(status, words), status_code=status)
    return Json({"error": words}, status_code=status)


def _found(gallery: Gallery, params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    query = search_query(params)
    rows = gallery.catalog.search(query)
    cursor = encode_cursor(rows[-1]) if rows and len(rows) == query.limit else None
    return rows, cursor


def home(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    params = dict(request.query_params)
    try:
        last_id = gallery.catalog.last_change()  # before the search: /events sends what follows
        rows, cursor = _found(gallery, params | {"limit": str(PAGE)})
    except BadRequest as exc:
        return problem(400, str(exc), html=True)
    filters = {k: v for k, v in params.items() if k in pages.FILTERS}
    return Html(pages.grid(last_id, rows, gallery.catalog.facets(), filters, cursor))


def api_search(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    try:
        rows, cursor = _found(gallery, dict(request.query_params))
    except BadRequest as exc:
        return problem(400, str(exc))
    for row in rows:
        row["thumb"] = pages.thumb_url(row)
    return Json({"items": rows, "next": cursor})


def api_item(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    row = gallery.catalog.item(request.path_params["id"])
    if row is None:
        return problem(404, "no such item")
    return Json(row | {"thumb": pages.thumb_url(row)})


def api_facets(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    return Json(gallery.catalog.facets())


def item(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    row = gallery.catalog.item(request.path_params["id"])
    if row is None:
        return problem(404, "no such item", html=True)
    return Html(pages.item(row))


def compare(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    ids = []
    for name in ("a", "b"):
        value = request.query_params.get(name, "")
        if value and not value.isdigit():
            return problem(400, f"{name}: expected an item id", html=True)
        ids.append(int(value) if value else None)
    if ids[0] is None:
        return problem(400, "a: expected an item id", html=True)
    a = gallery.catalog.item(ids[0])
    b = gallery.catalog.item(ids[1]) if ids[1] is not None else None
    if a is None or (ids[1] is not None and b is None):
        return problem(404, "no such item", html=True)
    if b is None:
        return Html(pages.pick_other(a, gallery.catalog.search(search_query({}))))
    return Html(pages.compare(a, b))


def thumb(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    name = request.path_params["name"]
    sha = name.removesuffix(".webp")
    if not name.endswith(".webp") or not SHA256.match(sha):
        return problem(404, "no such thumbnail")
    data = gallery.thumbs.cached(sha)
    if data is None:
        row = gallery.catalog.source_of(sha)
        if row is None:
            return problem(404, "no such thumbnail")
        data = _make(gallery, row, sha)
    if data is None:
        return _placeholder(gallery)
    return Response(data, media_type="image/webp", headers={"Cache-Control": IMMUTABLE})


def thumb_of_item(request: Request) -> Response:
    """A row without a recorded sha256: its file is hashed (remembered while the row
    names the same file, size and mtime) and its thumbnail kept under that sha256."""
    gallery: Gallery = request.app.state.gallery
    row = gallery.catalog.item(request.path_params["id"])
    if row is None:
        return problem(404, "no such item")
    if pages.is_video(row):
        return _placeholder(gallery)
    try:
        opened = open_listed(gallery.media_root, row["local_path"])
    except (Refused, OSError):
        return _placeholder(gallery)
    try:
        key = (row["id"], row["local_path"], row["size"], row["mtime"])
        sha = gallery.hashes.get(key) or file_sha256(opened.fd)
        gallery.hashes.put(key, sha)
        data = gallery.thumbs.cached(sha)
        if data is None and not pages.is_video(row) and not gallery.thumbs.failed(sha):
            data = gallery.thumbs.make(sha, opened.fd)
    finally:
        os.close(opened.fd)
    if data is None:
        return _placeholder(gallery)
    return Response(
        data, media_type="image/webp", headers={"Cache-Control": "no-cache", "ETag": f'"{sha}"'}
    )


def file(request: Request) -> Response:
    gallery: Gallery = request.app.state.gallery
    row = gallery.catalog.item(request.path_params["id"])
    if row is None:
        return problem(404, "no such item")
    try:
        opened = open_listed(gallery.media_root, row["local_path"])
    except Refused as exc:
        return problem(403, f"not served: {exc}")
    except OSError:
        return problem(404, "the file is not in the library")
    return _ranged(request, opened, os.path.basename(row["path"]))


def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_FILES:
        return problem(404, "no such file")
    return Response(
        (STATIC / name).read_bytes(),
        media_type=STATIC_FILES[name],
        headers={"Cache-Control": "no-cache"},
    )


class Events:
    """`/events`, at most MAX_STREAMS clients at once (each polls the catalog): more get 503
    and their EventSource retries."""

    def __init__(self) -> None:
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        gallery: Gallery = request.app.state.gallery
        if self.open >= MAX_STREAMS:
            await problem(503, "too many live clients")(scope, receive, send)
            return
        self.open += 1
        try:
            await StreamingResponse(
                event_stream(request, gallery.catalog),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )(scope, receive, send)
        finally:
            self.open -= 1


def unavailable(request: Request, exc: Exception) -> Response:
    """A catalog that cannot be read now (a database down, every connection busy): 503,
    saying why; the next request tries again."""
    html = request.url.path in ("/", "/compare") or request.url.path.startswith("/item/")
    return problem(503, f"the catalog cannot be read now: {exc}", html=html)


def build_app(gallery: Gallery) -> Starlette:
    """The application, its handlers reading `gallery` from the app's state."""
    routes = [
        Route("/", home),
        Route("/item/{id:int}", item),
        Route("/compare", compare),
        Route("/api/search", api_search),
        Route("/api/item/{id:int}", api_item),
        Route("/api/facets", api_facets),
        Route("/events", Events()),
        Route("/thumb/item/{id:int}.webp", thumb_of_item),
        Route("/thumb/{name}", thumb),
        Route("/file/{id:int}", file),
        Route("/static/{name}", static),
    ]
    app = Starlette(routes=routes, exception_handlers={CatalogUnavailable: unavailable})
    app.state.gallery = gallery
    return app


def thumbnail_for(gallery: Gallery, row: dict[str, Any]) -> None:
    """Make a row's thumbnail unless it is there (the background worker)."""
    sha = row.get("sha256")
    if isinstance(sha, str) and SHA256.match(sha):
        if gallery.thumbs.cached(sha) is None:
            _make(gallery, row, sha)
        return
    if pages.is_video(row):
        return
    try:
        opened = open_listed(gallery.media_root, row["local_path"])
    except (Refused, OSError):
        return
    try:
        sha = file_sha256(opened.fd)
        gallery.hashes.put((row["id"], row["local_path"], row["size"], row["mtime"]), sha)
        if gallery.thumbs.cached(sha) is None:
            gallery.thumbs.make(sha, opened.fd)
    finally:
        os.close(opened.fd)


def _make(gallery: Gallery, row: dict[str, Any], sha: str) -> bytes | None:
    """The thumbnail (a video's: its poster frame) of a row's file, made now; None (the
    placeholder) for a file that failed before, a file that is gone or changed (its bytes
    are hashed first: a thumbnail keyed by a sha256 is of those bytes), a video without
    ffmpeg."""
    video = pages.is_video(row)
    if gallery.thumbs.failed(sha) or (video and posters.ffmpeg() is None):
        return None
    try:
        opened = open_listed(gallery.media_root, row["local_path"])
    except (Refused, OSError):
        return None
    try:
        if file_sha256(opened.fd) != sha:  # the file changed since the row was written
            return None
        return gallery.thumbs.make(sha, opened.fd, video)
    finally:
        os.close(opened.fd)


def _placeholder(gallery: Gallery) -> Response:
    return Response(
        gallery.thumbs.placeholder, media_type="image/webp", headers={"Cache-Control": "no-cache"}
    )


def _ranged(request: Request, opened: Any, name: str) -> Response:
    """The file, whole or the one byte range asked for; downloads and anything not shown
    inline are attachments; nothing served is ever run by the browser (sandbox CSP)."""
    size = opened.size
    span = parse_range(request.headers.get("range"), size)
    disposition = (
        "inline" if opened.inline and "download" not in request.query_params else "attachment"
    )
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-cache",
    }
    if span is False:
        os.close(opened.fd)
        return Response(
            b"", status_code=416, headers=headers | {"Content-Range": f"bytes */{size}"}
        )
    first, last, status = (0, size - 1, 200) if span is None or span is True else (*span, 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(max(0, last - first + 1))
    return StreamingResponse(
        read_span(opened.fd, first, last),
        status_code=status,
        media_type=opened.content_type,
        headers=headers,
    )
