"""forge-sync-gallery over real HTTP (a real process on 127.0.0.1, a catalog the real sink
made): the API and its cursor, escaping, the files it serves and refuses, Range, thumbnails
(cache headers, placeholder, reuse of a name), live events, read-only, metrics."""

from __future__ import annotations

import http.client
import io
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from PIL import Image

from tests.support.gallery import HOSTILE_PROMPT, Gallery, Library


def api(gallery: Gallery, path: str) -> Any:
    status, _, body = gallery.get(path)
    assert status == 200, body
    return json.loads(body)


def all_items(gallery: Gallery, query: str = "") -> list[dict[str, Any]]:
    """Every page of /api/search, following its cursor (pages of 3)."""
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api(gallery, f"/api/search?limit=3{query}{cursor}")
        items += page["items"]
        if not page["next"]:
            return items
        cursor = "&cursor=" + quote(page["next"])


def catalog_ids(library: Library, where: str = "1") -> list[int]:
    db = sqlite3.connect(library.catalog)
    try:
        sql = f"SELECT id FROM media WHERE {where} ORDER BY mtime DESC, id DESC"  # noqa: S608
        rows = db.execute(sql)
        return [row[0] for row in rows]
    finally:
        db.close()


def test_search_pages_through_every_row_newest_first(library: Library, gallery: Gallery) -> None:
    """The cursor walks the whole catalog in pages, newest first, no row twice or missed."""
    assert [item["id"] for item in all_items(gallery)] == catalog_ids(library)


def test_filters_narrow_the_search(library: Library, gallery: Gallery) -> None:
    """q (full text), generator, container, since/until each narrow the rows to the ones the
    catalog says match; a bad or unknown parameter is a 400 with a JSON error naming it."""
    found = api(gallery, "/api/search?q=zanzibarquux")["items"]
    assert [item["path"] for item in found] == ["hostile.png"]
    comfy = all_items(gallery, "&generator=comfyui")
    assert comfy and [i["id"] for i in comfy] == catalog_ids(library, "generator = 'comfyui'")
    forge = all_items(gallery, "&container=comfy-b&until=2026-11-01T12:05:00Z")
    assert [i["id"] for i in forge] == catalog_ids(
        library, "container = 'comfy-b' AND mtime < '2026-11-01T12:05:00.000000Z'"
    )
    assert api(gallery, "/api/search?since=2099-01-01")["items"] == []
    for bad, word in (("limit=0", "limit"), ("since=soon", "since"), ("colour=red", "colour")):
        status, headers, body = gallery.get(f"/api/search?{bad}")
        assert status == 400 and word in json.loads(body)["error"]
        assert headers["content-type"].startswith("application/json")


def test_item_and_facets(library: Library, gallery: Gallery) -> None:
    """/api/item has every column and the file's versions; /api/facets counts containers
    and generators as the catalog does."""
    hostile = library.row_id("forge-a", "hostile.png")
    item = api(gallery, f"/api/item/{hostile}")
    assert item["prompt"] == HOSTILE_PROMPT and item["seed"] == 4242
    assert item["sampler"] == "Euler a" and [v["id"] for v in item["versions"]] == [hostile]
    facets = api(gallery, "/api/facets")
    containers = {entry["value"]: entry["count"] for entry in facets["container"]}
    assert containers["comfy-b"] == len(catalog_ids(library, "container = 'comfy-b'"))
    assert gallery.get("/api/item/999999")[0] == 404


def test_hostile_prompt_is_escaped_on_every_page(library: Library, gallery: Gallery) -> None:
    """A prompt with </bdi><script> and an onerror attribute comes back as text on the grid,
    the item and compare pages; no page has an inline script; the CSP allows only 'self'."""
    hostile = library.row_id("forge-a", "hostile.png")
    for path in ("/", f"/item/{hostile}", f"/compare?a={hostile}&b=1", "/?q=zanzibarquux"):
        status, headers, body = gallery.get(path)
        page = body.decode()
        assert status == 200
        assert "<script>window" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.__pwned=1" in page
        assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/gallery.js" defer>']
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "'unsafe-inline'" not in headers["content-security-policy"]


def test_no_request_path_reaches_the_filesystem(library: Library, gallery: Gallery) -> None:
    """Traversal in any route is a 404; rows whose file is a symlink, behind a linked
    folder, or outside media_root are refused (403); nothing outside the library is sent."""
    for path in (
        "/file/../../../../etc/passwd",
        "/file/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/thumb/..%2f..%2f..%2fetc%2fpasswd",
        "/thumb/../../etc/passwd.webp",
        "/static/..%2fapp.py",
        "/static/../app.py",
        "/file/1/../../etc/passwd",
        "//etc/passwd",
        "/file/-1",
    ):
        status, _, body = gallery.get(path)
        assert status in (404, 400), (path, status)
        assert b"root:" not in body and b"import" not in body
    for container, name in (
        ("forge-a", "linked.png"),
        ("evil", "secret.png"),
        ("outside", "secret.png"),
    ):
        status, _, body = gallery.get(f"/file/{library.row_id(container, name)}")
        assert status == 403, (container, name)
        assert b"outside the library" not in body and b"PNG" not in body


def test_range_requests(library: Library, gallery: Gallery) -> None:
    """A byte range, an open-ended one, the last N bytes (206, Content-Range); an
    unsatisfiable one (416, bytes */size); no Range: the whole file (200, Accept-Ranges)."""
    video = library.row_id("comfy-b", "comfy_vhs_h264.mp4")
    data = (library.media / "comfy-b" / "comfy_vhs_h264.mp4").read_bytes()
    size = len(data)
    status, headers, body = gallery.get(f"/file/{video}")
    assert (status, body, headers["accept-ranges"]) == (200, data, "bytes")
    assert headers["content-type"] == "video/mp4"
    cases = {"bytes=0-9": (0, 9), f"bytes={size - 100}-": (size - 100, size - 1)}
    cases["bytes=-7"] = (size - 7, size - 1)
    cases[f"bytes=10-{size + 50}"] = (10, size - 1)
    for header, (first, last) in cases.items():
        status, headers, body = gallery.get(f"/file/{video}", {"Range": header})
        assert status == 206, header
        assert headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert body == data[first : last + 1]
    status, headers, _ = gallery.get(f"/file/{video}", {"Range": f"bytes={size}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{size}"


def test_files_are_never_run_by_the_browser(library: Library, gallery: Gallery) -> None:
    """/file/<id> is sandboxed (CSP sandbox, nosniff); download=1 makes it an attachment."""
    image = library.row_id("forge-a", "hostile.png")
    _, headers, _ = gallery.get(f"/file/{image}")
    assert "sandbox" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"].startswith("inline")
    _, headers, _ = gallery.get(f"/file/{image}?download=1")
    assert headers["content-disposition"] == "attachment; filename*=UTF-8''hostile.png"


def test_thumbnails_are_immutable_webp_keyed_by_sha256(library: Library, gallery: Gallery) -> None:
    """A row's thumbnail is WebP, at most thumbnail_size, cached forever by the browser and
    kept under its sha256 in the thumbnails folder."""
    item = api(gallery, f"/api/item/{library.row_id('forge-a', 'automatic1111_cropped.png')}")
    status, headers, body = gallery.get(item["thumb"])
    assert status == 200 and headers["content-type"] == "image/webp"
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= 512
    sha = item["sha256"]
    assert (gallery.thumbnails / sha[:2] / f"{sha}.webp").read_bytes() == body
    assert gallery.get("/thumb/" + "0" * 64 + ".webp")[0] == 404


def test_broken_file_is_listed_with_a_placeholder(library: Library, gallery: Gallery) -> None:
    """An empty PNG keeps its row in the grid; its thumbnail is the placeholder, not cached
    (no-cache) and not stored under the file's sha256."""
    broken = library.row_id("forge-a", "broken.png")
    assert broken in [item["id"] for item in all_items(gallery)]
    item = api(gallery, f"/api/item/{broken}")
    status, headers, _ = gallery.get(item["thumb"])
    assert status == 200 and headers["cache-control"] == "no-cache"
    assert not (gallery.thumbnails / item["sha256"][:2] / f"{item['sha256']}.webp").exists()


def test_row_without_sha256_gets_a_thumbnail_by_content(library: Library, gallery: Gallery) -> None:
    """A row synced without a sha256 (verify: size) is hashed by the gallery; its thumbnail
    is kept under the content's sha256 and revalidated (no-cache, ETag)."""
    item = api(gallery, f"/api/item/{library.row_id('forge-a', 'nosha.png')}")
    assert item["sha256"] is None and item["thumb"].startswith("/thumb/item/")
    status, headers, body = gallery.get(item["thumb"])
    import hashlib

    sha = hashlib.sha256((library.media / "forge-a" / "nosha.png").read_bytes()).hexdigest()
    assert status == 200 and headers["etag"] == f'"{sha}"'
    assert (gallery.thumbnails / sha[:2] / f"{sha}.webp").read_bytes() == body


def test_reused_name_gets_a_new_thumbnail(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """When a name is reused by a different image, the row's thumbnail is the new image's
    (keyed by content), not the old one's (keyed by name, as path+mtime caches do)."""
    from tests.support.gallery import a1111_png

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (250, 0, 0)).save(red)
    Image.new("RGB", (64, 64), (0, 0, 250)).save(blue)
    library.add(red, "forge-a", "reused.png")
    first = api(gallery, f"/api/item/{library.row_id('forge-a', 'reused.png')}")
    old = gallery.get(first["thumb"])[2]
    library.add(blue, "forge-a", "reused.png")
    second = api(gallery, f"/api/item/{library.row_id('forge-a', 'reused.png')}")
    new = gallery.get(second["thumb"])[2]
    assert second["thumb"] != first["thumb"]
    with Image.open(io.BytesIO(old)) as a, Image.open(io.BytesIO(new)) as b:
        assert a.convert("RGB").getpixel((5, 5))[0] > 200
        assert b.convert("RGB").getpixel((5, 5))[2] > 200
    assert a1111_png  # the module's helper stays importable


def last_change(library: Library) -> int:
    db = sqlite3.connect(library.catalog)
    try:
        return int(db.execute("SELECT max(seq) FROM media_changes").fetchone()[0])
    finally:
        db.close()


def next_event(response: http.client.HTTPResponse) -> tuple[int, dict[str, Any]]:
    """The next `event: item` of a stream: its id (the change number) and its data."""
    lines: list[bytes] = []
    while not lines or not lines[-1].startswith(b"data: "):
        lines.append(response.readline())
    (change,) = [int(line[4:]) for line in lines if line.startswith(b"id: ")]
    assert b"event: item\n" in lines
    return change, json.loads(lines[-1].removeprefix(b"data: "))


def test_new_rows_arrive_as_server_sent_events(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """A client of /events gets a row added after it connected, as `event: item` with the
    change number as its id and the row (its id, its prompt) as JSON text."""
    from tests.support.gallery import a1111_png

    connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=20)
    try:
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        assert response.readline() == b"retry: 3000\n"
        library.add(a1111_png(tmp_path / "live.png", "arrives <live>", 5), "forge-a", "live.png")
        change, event = next_event(response)
        assert event["id"] == library.row_id("forge-a", "live.png")
        assert event["prompt"] == "arrives <live>" and change == last_change(library)
    finally:
        connection.close()


def test_a_row_updated_in_place_is_announced(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """A row the catalog updates in place (its file synced again with other content, then
    purged on the container) keeps its id, and each update is still sent on /events with
    a new change number."""
    from tests.support.gallery import a1111_png

    library.add(a1111_png(tmp_path / "a.png", "first take", 8), "forge-a", "again.png")
    row = library.row_id("forge-a", "again.png")
    connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=20)
    try:
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.readline() == b"retry: 3000\n"
        library.add(a1111_png(tmp_path / "b.png", "second take", 9), "forge-a", "again.png")
        assert library.row_id("forge-a", "again.png") == row
        first, event = next_event(response)
        assert (event["id"], event["prompt"]) == (row, "second take")
        library.sink.deliver(
            {
                "type": "file_purged",
                "container": "forge-a",
                "path": "again.png",
                "purged_at": "2026-11-03T00:00:00.000000Z",
            }
        )
        second, event = next_event(response)
        assert event["id"] == row and second > first
    finally:
        connection.close()


def test_read_only_and_metrics(library: Library, gallery: Gallery) -> None:
    """Anything but GET/HEAD is refused (405); the catalog is unchanged by serving; the
    gallery's own /metrics counts requests and thumbnails made."""
    before = library.catalog.read_bytes()
    for method in ("POST", "PUT", "DELETE"):
        connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=10)
        connection.request(method, "/api/item/1", body=b"{}")
        assert connection.getresponse().status == 405
        connection.close()
    assert library.catalog.read_bytes() == before
    item = api(gallery, "/api/search?limit=1")["items"][0]
    gallery.get(
        api(gallery, f"/api/item/{library.row_id('forge-a', 'img2img_cropped.png')}")["thumb"]
    )
    assert item
    text = gallery.get("/metrics")[2].decode()
    assert re.search(
        r'forge_sync_gallery_requests_total\{code="200",route="api/search"\} [1-9]', text
    )
    assert re.search(r'forge_sync_gallery_thumbnails_total\{result="made"\} [1-9]', text)
    assert "forge_sync_gallery_request_seconds_bucket" in text


def test_live_clients_are_bounded(gallery: Gallery) -> None:
    """At most 32 /events streams at once (each polls the catalog); the next gets 503, and a
    stream that closes frees its place."""
    streams = []
    try:
        for _ in range(32):
            connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=20)
            connection.request("GET", "/events")
            response = connection.getresponse()
            assert response.status == 200 and response.readline() == b"retry: 3000\n"
            streams.append(connection)
        assert gallery.get("/events")[0] == 503
        streams.pop().close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the server sees the close at its next poll
            connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=20)
            connection.request("GET", "/events")
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        for connection in streams:
            connection.close()


def test_events_resume_after_an_id(library: Library, gallery: Gallery) -> None:
    """/events?after=<n> (what the grid sends: the last change when it was rendered) first
    sends the changes after it, so a row added between the page and the stream is not
    missed; the grid page carries that number."""
    newest = last_change(library)
    assert f'data-after="{newest}"' in gallery.get("/")[2].decode()
    connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=20)
    try:
        connection.request("GET", f"/events?after={newest - 1}")
        response = connection.getresponse()
        assert response.readline() == b"retry: 3000\n" and response.readline() == b"\n"
        assert response.readline() == f"id: {newest}\n".encode()
    finally:
        connection.close()


def test_megabyte_prompt_keeps_the_grid_small(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """A 1 MB prompt (RTL marks included) is listed with a bounded preview: the grid page and
    a search page stay small; the item page has it whole (or as the catalog kept it)."""
    from tests.support.gallery import a1111_png

    huge = ("\u202eword " * 200_000)[:1_000_000]
    library.add(a1111_png(tmp_path / "huge.png", huge, 3), "forge-a", "huge.png")
    row = library.row_id("forge-a", "huge.png")
    status, _, page = gallery.get("/")
    assert status == 200 and len(page) < 100_000
    found = api(gallery, "/api/search?limit=5")["items"]
    assert row in [item["id"] for item in found]
    assert all(len(item["prompt"] or "") <= 500 for item in found)
    status, _, body = gallery.get(f"/item/{row}")
    kept = api(gallery, f"/api/item/{row}")["prompt"] or ""
    assert status == 200 and len(body) >= len(kept)


def test_item_lists_the_files_versions(library: Library, gallery: Gallery, tmp_path: Path) -> None:
    """A file replaced under its name (the daemon moved the old one into `.versions/`): the
    item of either lists both rows, newest first, and the old one is still served."""
    from tests.support.gallery import a1111_png

    old = library.add(a1111_png(tmp_path / "v1.png", "first take", 1), "forge-a", "shots/take.png")
    moved = library.media / "forge-a" / ".versions" / "shots" / "take.20261101T000000Z.png"
    moved.parent.mkdir(parents=True)
    (library.media / "forge-a" / "shots" / "take.png").rename(moved)
    library.sink.deliver(
        {
            "type": "file_versioned",
            "container": "forge-a",
            "path": "shots/take.png",
            "local_path": str(moved),
            "size": old["size"],
            "mtime": old["mtime"],
            "sha256": old["sha256"],
            "versioned_at": "2026-11-02T00:00:00.000000Z",
        }
    )
    library.add(a1111_png(tmp_path / "v2.png", "second take", 2), "forge-a", "shots/take.png")
    current = library.row_id("forge-a", "shots/take.png")
    versions = [v["id"] for v in api(gallery, f"/api/item/{current}")["versions"]]
    assert len(versions) == 2 and versions[0] == current
    assert [v["id"] for v in api(gallery, f"/api/item/{versions[1]}")["versions"]] == versions
    status, _, body = gallery.get(f"/file/{versions[1]}")
    assert status == 200 and body == moved.read_bytes()


def unreadable_count(gallery: Gallery) -> float:
    text = gallery.get("/metrics")[2].decode()
    found = re.search(r'forge_sync_gallery_thumbnails_total\{result="unreadable"\} ([0-9.]+)', text)
    return float(found.group(1)) if found else 0.0


def test_unreadable_files_are_tried_once_and_videos_never(
    library: Library, gallery: Gallery
) -> None:
    """A broken image is decoded once per process (then the placeholder at once); a video is
    never handed to the image decoder (its poster is ffmpeg's: tests/gallery/test_posters)."""
    broken = api(gallery, f"/api/item/{library.row_id('forge-a', 'broken.png')}")
    gallery.get(broken["thumb"])
    before = unreadable_count(gallery)
    for _ in range(3):
        assert gallery.get(broken["thumb"])[0] == 200
    for name in ("comfy_vhs.webm", "comfy_savevideo.mkv", "comfy_vhs_h264.mp4"):
        video = api(gallery, f"/api/item/{library.row_id('comfy-b', name)}")
        assert gallery.get(video["thumb"])[0] == 200
    assert unreadable_count(gallery) == before


def test_size_and_metadata_filters(library: Library, gallery: Gallery) -> None:
    """`size=WxH` and `metadata=yes|no` narrow to the rows the catalog says (a broken file
    has no metadata); a malformed value names its parameter."""
    sized = all_items(gallery, "&size=64x64")
    assert sized and [i["id"] for i in sized] == catalog_ids(library, "width = 64 AND height = 64")
    bare = all_items(gallery, "&metadata=no")
    assert [i["id"] for i in bare] == catalog_ids(library, "generator IS NULL")
    assert library.row_id("forge-a", "broken.png") in [i["id"] for i in bare]
    read = all_items(gallery, "&metadata=yes")
    assert len(read) + len(bare) == len(catalog_ids(library))
    for bad in ("size=big", "metadata=maybe"):
        status, _, body = gallery.get(f"/api/search?{bad}")
        assert status == 400 and bad.split("=")[0] in json.loads(body)["error"]


def test_thumbnail_of_any_sha256_in_the_catalog(library: Library, tmp_path: Path) -> None:
    """A gallery just started (no page or answer listed anything yet) answers the thumbnail
    URL of any sha256 the catalog holds (an indexed lookup, as a bookmarked or shared URL
    would ask), and 404 for one it does not hold."""
    db = sqlite3.connect(library.catalog)
    try:
        (sha,) = db.execute(
            "SELECT sha256 FROM media WHERE container = 'forge-a' AND path = 'img2img_cropped.png'"
        ).fetchone()
    finally:
        db.close()
    server = Gallery(library, tmp_path / "thumbs").start()
    try:
        status, headers, body = server.get(f"/thumb/{sha}.webp")
        assert status == 200 and headers["cache-control"].endswith("immutable")
        assert body[:4] == b"RIFF" and body[8:12] == b"WEBP"
        assert server.get("/thumb/" + "1" * 64 + ".webp")[0] == 404
    finally:
        server.stop()
