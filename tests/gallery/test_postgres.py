"""forge-sync-gallery over the `postgres` sink (a real PostgreSQL), fed by two real
forge-syncd daemons (local transport, one container each, one media_root): the grid, search,
facets, an item with its versions, files with Range, traversal refused, a thumbnail by
sha256, a new row over Server-Sent Events, and read-only sessions."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.gallery.pg_catalog import PostgresCatalog
from forge_syncd.gallery.source import CatalogUnavailable
from tests.support.daemon import start_daemon, wait_until
from tests.support.gallery import FIXTURES, HOSTILE_PROMPT, Gallery, a1111_png
from tests.support.postgres import PostgresServer, missing_reason
from tests.support.trees import write_file

pytestmark = pytest.mark.slow
OLD = 1_700_000_000.0
CONTAINERS = ("forge-a", "comfy-b")


def daemon_config(root: Path, container: str, dsn: str) -> Path:
    """A daemon of its own (state, log, socket) syncing `<root>/<container>-out` into the
    shared media_root, its catalog the shared database."""
    work = root / container
    path = work / "forge-sync.yaml"
    work.mkdir(parents=True)
    path.write_text(
        f"""\
media_root: {root}/media
state_dir: {work}/state
log: {{level: info, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
containers:
  - name: {container}
    transport: local
    kind: generic
    root: {root}/{container}-out
    sync: {{settle: 0s, interval: 1s, watch: false}}
ingest:
  - {{name: shared, type: postgres, dsn: '{dsn}'}}
"""
    )
    return path


@dataclass
class Shared:
    """The database both daemons feed and the gallery reads, and its media_root."""

    root: Path
    dsn: str
    server: PostgresServer

    @property
    def media(self) -> Path:
        return self.root / "media"

    def config(self, gallery_yaml: str = "") -> Path:
        """The gallery's config: the same media_root, the postgres sink by name."""
        text = f"""\
media_root: {self.media}
state_dir: {self.root}/gallery-state
metrics: {{listen: null}}
control: {{socket: {self.root}/gallery-run/control.sock}}
ingest:
  - {{name: shared, type: postgres, dsn: '{self.dsn}'}}
{gallery_yaml.replace("gallery: {", "gallery: {catalog: shared, ")}"""
        path = self.root / "gallery.yaml"
        path.write_text(text)
        return path

    def rows(self, where: str = "TRUE") -> list[dict[str, Any]]:
        with (
            psycopg.connect(self.dsn) as conn,
            conn.cursor(row_factory=psycopg.rows.dict_row) as cursor,
        ):
            sql = f"SELECT * FROM media WHERE {where} ORDER BY mtime DESC, id DESC"  # noqa: S608
            return cursor.execute(sql).fetchall()

    def row_id(self, container: str, path: str) -> int:
        (row,) = self.rows(
            f"container = '{container}' AND path = '{path}' AND versioned_at IS NULL"
        )
        return int(row["id"])


def postgres_or_fail() -> PostgresServer:
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true)", pytrace=False)
        pytest.skip(reason)
    return PostgresServer().start()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """Two daemons, each its container's folder (the fixture media, a hostile A1111 PNG),
    feeding one new database; yielded once both containers' files have rows. A row whose
    file is outside media_root is added by hand (a hostile or stale row)."""
    root = tmp_path_factory.mktemp("gallery-pg")
    server = postgres_or_fail()
    shared = Shared(root, server.create_database("gallery"), server)
    for container in CONTAINERS:
        out = root / f"{container}-out"
        sources = ["automatic1111_cropped.png", "img2img_cropped.png", "unclip_2pass_cropped.png"]
        for n, name in enumerate(sources if container == "forge-a" else sources[1:]):
            write_file(out / name, (FIXTURES / "real-media" / name).read_bytes(), OLD + n)
        out.mkdir(exist_ok=True)
        if container == "forge-a":
            a1111_png(out / "hostile.png", HOSTILE_PROMPT, 4242)
            os.utime(out / "hostile.png", (OLD + 10, OLD + 10))
    daemons = [start_daemon(daemon_config(root, c, shared.dsn)) for c in CONTAINERS]
    try:

        def synced() -> bool:
            try:
                return len(shared.rows("versioned_at IS NULL")) == 6
            except psycopg.Error:
                return False

        wait_until(synced, timeout=90, what="both daemons' rows")
        outside = root / "secret.png"
        a1111_png(outside, "outside the library", 1)
        with server.superuser("gallery") as conn:
            conn.execute(
                "INSERT INTO media (container, path, local_path, size, mtime, loras)"
                " VALUES ('outside', 'secret.png', %s, %s, '2023-01-01T00:00:00Z',"
                ' \'[{"name": "detailTweaker", "weight": 0.5}, {"name": 7}, "x"]\')',
                (str(outside), outside.stat().st_size),
            )
        yield shared
    finally:
        for daemon in daemons:
            stop(daemon)
        server.destroy()


@pytest.fixture(scope="module")
def gallery(shared: Shared) -> Iterator[Gallery]:
    server = Gallery(shared, shared.root / "thumbnails").start()  # type: ignore[arg-type]
    yield server
    server.stop()


def api(gallery: Gallery, path: str) -> Any:
    status, _, body = gallery.get(path)
    assert status == 200, body
    return json.loads(body)


def all_items(gallery: Gallery, query: str = "") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api(gallery, f"/api/search?limit=2{query}{cursor}")
        items += page["items"]
        if not page["next"]:
            return items
        cursor = "&cursor=" + quote(page["next"])


def test_grid_and_search_show_both_daemons_rows(shared: Shared, gallery: Gallery) -> None:
    """The cursor walks every row of the database newest first (both daemons' containers);
    the grid page lists them; q, container, generator and since/until narrow as the
    database says; a forged cursor is a 400, not a database error."""
    assert [i["id"] for i in all_items(gallery)] == [r["id"] for r in shared.rows()]
    assert {i["container"] for i in all_items(gallery)} == {*CONTAINERS, "outside"}
    page = gallery.get("/")[2].decode()
    assert all(f'data-id="{r["id"]}"' in page for r in shared.rows())
    found = api(gallery, "/api/search?q=duck")["items"]
    assert [(i["container"], i["path"]) for i in found] == [
        ("forge-a", "automatic1111_cropped.png")
    ]
    assert found[0]["seed"] == 235284042 and found[0]["mtime"].endswith("Z")
    comfy = all_items(gallery, "&container=comfy-b&generator=comfyui")
    expected = shared.rows("container = 'comfy-b' AND generator = 'comfyui'")
    assert comfy and [i["id"] for i in comfy] == [r["id"] for r in expected]
    old = all_items(gallery, "&until=2023-11-14T22:13:21Z")
    assert [i["id"] for i in old] == [
        r["id"] for r in shared.rows("mtime < '2023-11-14T22:13:21Z'")
    ]
    assert api(gallery, "/api/search?since=2099-01-01")["items"] == []
    for cursor in ("WyJub3QgYSB0aW1lIiwgMV0", "WyIyMDI2LTAxLTAxIiwgMWUzMDBd"):
        status, _, body = gallery.get(f"/api/search?cursor={cursor}")
        assert status == 400 and "cursor" in json.loads(body)["error"]


def test_facets_count_as_the_database_does(shared: Shared, gallery: Gallery) -> None:
    """/api/facets counts containers, front ends, LoRA names (kept by the database's
    trigger; entries without a text name skipped) and sizes as the database does, and the
    total; a facet filter (size, metadata) narrows to those rows."""
    facets = api(gallery, "/api/facets")
    rows = shared.rows()
    containers = {e["value"]: e["count"] for e in facets["container"]}
    assert containers == {
        c: sum(r["container"] == c for r in rows) for c in {*CONTAINERS, "outside"}
    }
    generators = {e["value"]: e["count"] for e in facets["generator"]}
    assert generators == {
        g: sum(r["generator"] == g for r in rows) for g in {r["generator"] for r in rows} - {None}
    }
    assert facets["total"] == len(rows)
    assert facets["lora"] == [{"value": "detailTweaker", "count": 1}]  # the rest not names
    assert facets["metadata"][1] == {
        "value": "no",
        "count": sum(r["generator"] is None for r in rows),
    }
    size = facets["size"][0]["value"]
    width, height = (int(n) for n in size.split("x"))
    sized = all_items(gallery, f"&size={size}")
    assert [i["id"] for i in sized] == [
        r["id"] for r in rows if (r["width"], r["height"]) == (width, height)
    ]
    bare = all_items(gallery, "&metadata=no")
    assert [i["id"] for i in bare] == [r["id"] for r in rows if r["generator"] is None]


def test_item_escaped_and_its_versions(shared: Shared, gallery: Gallery) -> None:
    """An item has every column (the hostile prompt whole, escaped on its page); a file
    changed in its container gets a versioned row from its daemon, and the item of either
    row lists both, newest first; the old version's file is served."""
    hostile = shared.row_id("forge-a", "hostile.png")
    item = api(gallery, f"/api/item/{hostile}")
    assert item["prompt"] == HOSTILE_PROMPT and item["seed"] == 4242
    page = gallery.get(f"/item/{hostile}")[2].decode()
    assert "<script>window" not in page and "&lt;script&gt;window.__pwned=1" in page
    write_file(shared.root / "comfy-b-out" / "img2img_cropped.png", b"changed", OLD + 99)
    wait_until(
        lambda: len(shared.rows("container = 'comfy-b' AND versioned_at IS NOT NULL")) == 1,
        timeout=60,
        what="the versioned row",
    )
    current = shared.row_id("comfy-b", "img2img_cropped.png")
    versions = [v["id"] for v in api(gallery, f"/api/item/{current}")["versions"]]
    assert len(versions) == 2 and versions[0] == current
    old = api(gallery, f"/api/item/{versions[1]}")
    assert [v["id"] for v in old["versions"]] == versions and "/.versions/" in old["local_path"]
    status, _, body = gallery.get(f"/file/{versions[1]}")
    assert (status, body) == (200, (FIXTURES / "real-media" / "img2img_cropped.png").read_bytes())
    assert gallery.get("/api/item/999999999")[0] == 404
    assert gallery.get(f"/api/item/{2**63}")[0] == 404


def test_files_with_range_and_traversal_refused(shared: Shared, gallery: Gallery) -> None:
    """/file/<id> serves a daemon's file whole or by Range (206, Content-Range); traversal
    in the path is a 404; a row whose file is outside media_root is a 403, its bytes never
    sent."""
    duck = shared.row_id("forge-a", "automatic1111_cropped.png")
    data = (FIXTURES / "real-media" / "automatic1111_cropped.png").read_bytes()
    status, headers, body = gallery.get(f"/file/{duck}")
    assert (status, body, headers["accept-ranges"]) == (200, data, "bytes")
    status, headers, body = gallery.get(f"/file/{duck}", {"Range": "bytes=10-19"})
    assert (status, body) == (206, data[10:20])
    assert headers["content-range"] == f"bytes 10-19/{len(data)}"
    for path in ("/file/../../../../etc/passwd", "/thumb/..%2f..%2fetc%2fpasswd", "/file/-1"):
        status, _, body = gallery.get(path)
        assert status in (400, 404) and b"root:" not in body
    status, _, body = gallery.get(f"/file/{shared.row_id('outside', 'secret.png')}")
    assert status == 403 and b"PNG" not in body


def test_thumbnail_by_any_sha256_in_the_catalog(shared: Shared, tmp_path: Path) -> None:
    """A gallery just started (it has listed nothing) answers /thumb/<sha256>.webp for a
    file's sha256 the database holds (an indexed lookup), and 404 for one it does not."""
    server = Gallery(shared, tmp_path / "thumbs").start()  # type: ignore[arg-type]
    try:
        (row,) = shared.rows("container = 'forge-a' AND path = 'hostile.png'")
        status, headers, body = server.get(f"/thumb/{row['sha256']}.webp")
        assert status == 200 and headers["cache-control"].endswith("immutable")
        assert body[:4] == b"RIFF" and body[8:12] == b"WEBP"
        assert server.get("/thumb/" + "0" * 64 + ".webp")[0] == 404
    finally:
        server.stop()


def next_event(response: http.client.HTTPResponse) -> tuple[int, dict[str, Any]]:
    """The next `event: item` of a stream: its id (the change number) and its data."""
    lines: list[bytes] = []
    while not lines or not lines[-1].startswith(b"data: "):
        lines.append(response.readline())
    (change,) = [int(line[4:]) for line in lines if line.startswith(b"id: ")]
    return change, json.loads(lines[-1].removeprefix(b"data: "))


def test_new_and_updated_rows_arrive_as_events(shared: Shared, gallery: Gallery) -> None:
    """A client of /events gets a file a daemon syncs after it connected (`event: item`,
    the change number as its id, the row's id and prompt in its data), then a row updated
    in place (it keeps its id) with a later change number."""
    connection = http.client.HTTPConnection("127.0.0.1", gallery.port, timeout=60)
    try:
        connection.request("GET", "/events")
        response = connection.getresponse()
        assert response.status == 200 and response.readline() == b"retry: 3000\n"
        a1111_png(shared.root / "comfy-b-out" / "live.png", "arrives <live>", 5)
        change, event = next_event(response)
        assert (event["container"], event["path"], event["prompt"]) == (
            "comfy-b",
            "live.png",
            "arrives <live>",
        )
        assert event["id"] == shared.row_id("comfy-b", "live.png")
        duck = shared.row_id("forge-a", "automatic1111_cropped.png")
        with shared.server.superuser("gallery") as conn:  # as a daemon's file_purged does
            conn.execute("UPDATE media SET purged_at = now() WHERE id = %s", (duck,))
        later, event = next_event(response)
        assert event["id"] == duck and later > change
    finally:
        connection.close()


def test_a_read_only_role_serves_and_sessions_refuse_writes(shared: Shared) -> None:
    """With the role the README gives it (SELECT on media, media_changes, media_loras and
    nothing else), the reader searches, counts facets, reads items and changes; its
    sessions refuse a write even where the role could (read-only transactions), with a
    clear error rather than a traceback."""
    with shared.server.superuser("gallery") as conn:
        conn.execute(
            sql.SQL("CREATE ROLE gallery_reader LOGIN PASSWORD {}").format(
                sql.Literal(shared.server.password)
            )
        )
        conn.execute("GRANT SELECT ON media, media_changes, media_loras TO gallery_reader")
    reader = PostgresCatalog(shared.server.dsn("gallery", "gallery_reader"))
    assert [r["id"] for r in reader.search(CatalogQuery(limit=500))] == [
        r["id"] for r in shared.rows()
    ]
    assert reader.facets()["total"] == len(shared.rows())
    assert reader.changed_after(0, 1000) and reader.last_change() > 0
    duck = shared.row_id("forge-a", "automatic1111_cropped.png")
    assert reader.item(duck)["seed"] == 235284042  # type: ignore[index]
    owner = PostgresCatalog(shared.dsn)
    with pytest.raises(CatalogUnavailable, match="read-only transaction"):
        owner._run(lambda conn: conn.execute("DELETE FROM media"))
    assert shared.rows()


def test_a_database_that_is_down_is_a_503(shared: Shared, tmp_path: Path) -> None:
    """With PostgreSQL stopped, the API answers 503 saying the catalog cannot be read (no
    traceback); once it is back, the same gallery answers again."""
    server = Gallery(shared, tmp_path / "thumbs").start()  # type: ignore[arg-type]
    try:
        assert server.get("/api/search?limit=1")[0] == 200
        shared.server.stop()
        try:
            status, _, body = server.get("/api/search?limit=1")
            assert status == 503 and "cannot be read" in json.loads(body)["error"]
        finally:
            shared.server.start()
        assert server.get("/api/search?limit=1")[0] == 200
    finally:
        server.stop()
