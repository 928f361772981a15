"""Issue 23 item 15: a file whose name is not UTF-8 keeps its real path in the catalogs.

Synced by a real daemon through a real sshd into the SQLite catalog (and a jsonl sink),
found with `forge-syncctl find`; and delivered to a real PostgreSQL, including a database
made by the previous schema."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from forge_syncd.catalog import postgres_migrations
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.events.sinks.postgres import PostgresSink
from forge_syncd.library.events import (
    file_synced,
    file_versioned,
)
from forge_syncd.library.manifest import SyncedFile, VersionMove
from tests.e2e.test_events import with_ingest
from tests.support.cli import BIN, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.postgres import PostgresServer, served
from tests.support.sshd import SshdServer
from tests.support.trees import REAL_MEDIA, write_file

DUCK = (REAL_MEDIA / "automatic1111_cropped.png").read_bytes()  # A1111: "photo of a duck"
NAME = b"caf\xe9.png"  # Latin-1 "café.png": not UTF-8
SHOWN = "caf\\xe9.png"  # how logs, events' `path` and the terminal show it


def ctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def catalog_rows(path: Path) -> list[dict[str, Any]]:
    """The catalog's rows, read-only."""
    uri = path.absolute().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM media ORDER BY id")]


def catalog_rows_yet(path: Path) -> list[dict[str, Any]]:
    """The catalog's rows so far: none while the daemon has not made the file and its table
    yet (the file appears before its first migration commits; a read-only open of it may
    fail until then): any sqlite3.OperationalError is "not yet"."""
    if not path.exists():
        return []
    try:
        return catalog_rows(path)
    except sqlite3.OperationalError:
        return []


def test_a_name_that_is_not_utf8_keeps_its_real_path_in_the_catalog(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 23, item 15): the catalog row of `caf\\xe9.png` held the escaped
    text as local_path, so its metadata was never read and `find` returned a path that does
    not exist. Now the row's local_path is the real path (the exact bytes), the A1111
    prompt is read from that file, `find --json` gives a local_path whose bytes
    (os.fsencode) name the file on disk, the terminal shows the name escaped, and the
    event carries the exact bytes in `local_path_b64`."""
    remote = tmp_path / "remote"
    write_file(os.fsencode(remote / "out") + b"/" + NAME, DUCK, 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h", watch="false")
    catalog = tmp_path / "catalog.sqlite"
    with_ingest(
        config,
        f"{{name: catalog, type: catalog, path: {catalog}}}",
        f"{{name: archive, type: jsonl, path: {tmp_path / 'events.jsonl'}}}",
    )
    real = os.fsencode(tmp_path / "media" / "forge-a" / "out") + b"/" + NAME
    daemon = start_daemon(config)
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(socket.exists, what="the control socket")
        wait_until(
            lambda: len(catalog_rows_yet(catalog)) == 1,
            timeout=60,
            what="the catalog row",
        )
        (row,) = catalog_rows(catalog)
        assert row["local_path"] == real and os.path.exists(row["local_path"])
        assert row["path"] == f"out/{SHOWN}"
        assert (row["prompt"], row["seed"], row["metadata_error"]) == (
            "photo of a duck",
            235284042,
            None,
        )
        result = ctl(socket, "find", "--prompt", "duck", "--json")
        assert result.returncode == 0, result.stderr
        (found,) = json.loads(result.stdout)["files"]
        assert os.fsencode(found["local_path"]) == real
        assert os.path.exists(os.fsencode(found["local_path"]))
        assert found["path"] == f"out/{SHOWN}" and found["prompt"] == "photo of a duck"
        assert "\\udce9" in result.stdout  # the byte, as JSON escapes it
        lines = ctl(socket, "find", "--prompt", "duck")
        assert lines.returncode == 0, lines.stderr
        assert f"forge-a    out/{SHOWN}" in lines.stdout and "photo of a duck" in lines.stdout
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    (synced,) = [
        json.loads(line)
        for line in (tmp_path / "events.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "file_synced"
    ]
    assert synced["local_path"] == real.decode("utf-8", "backslashreplace")
    assert base64.b64decode(synced["local_path_b64"]) == real


# -- PostgreSQL -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    yield from served()


def synced_event(container_dir: bytes, relative: bytes, event_id: int) -> dict[str, Any]:
    info = os.stat(os.path.join(container_dir, relative))
    event = file_synced(
        "forge-a", "r1", container_dir, SyncedFile(relative, info.st_size, info.st_mtime_ns, None)
    )
    return {"id": event_id, **event}


def test_postgres_keeps_the_real_path_of_a_name_that_is_not_utf8(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    """Regression (issue 23, item 15, postgres sink): the same defect. A database made by
    the previous schema (version 1, with a row) is migrated and its row kept; then a file
    named `caf\\xe9.png` gets its prompt read from the real file, `local_path_bytes` holds
    its exact path, `find` returns a local_path whose bytes name it, and its version row
    (moved under .versions/) keeps the exact path too, once however often redelivered."""
    dsn = pg_server.create_database("exact_paths")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(postgres_migrations.SCHEMA_VERSION_TABLE)
        for statement in postgres_migrations.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO media (container, path, local_path, size, mtime, prompt)"
            " VALUES ('old', 'a.png', '/lib/old/a.png', 1, now(), 'from round 2')"
        )
    container_dir = os.fsencode(tmp_path / "media" / "forge-a")
    write_file(container_dir + b"/out/" + NAME, DUCK, 1.7e9)
    sink = PostgresSink("shared", {"dsn": dsn})
    try:
        sink.deliver(synced_event(container_dir, b"out/" + NAME, 1))
        version_path = b".versions/out/caf\xe9.20260101T000000.000000Z.png"
        os.makedirs(os.path.dirname(container_dir + b"/" + version_path))
        os.rename(container_dir + b"/out/" + NAME, container_dir + b"/" + version_path)
        info = os.stat(container_dir + b"/" + version_path)
        move = VersionMove(
            b"out/" + NAME,
            version_path,
            info.st_size,
            info.st_mtime_ns,
            None,
            "2026-01-01T00:00:00Z",
        )
        moved = {"id": 2, **file_versioned("forge-a", "r1", container_dir, move)}
        sink.deliver(moved)
        sink.deliver(moved)
        found = sink.find(CatalogQuery(prompt="duck"))
        old = sink.find(CatalogQuery(container="old"))
    finally:
        sink.close()
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT container, local_path, prompt, versioned_at IS NOT NULL FROM media ORDER BY id"
        ).fetchall()
    exact = container_dir + b"/" + version_path
    assert rows == [
        ("old", "/lib/old/a.png", "from round 2", False),
        ("forge-a", exact.decode("utf-8", "backslashreplace"), "photo of a duck", True),
    ]
    assert [(r["path"], r["prompt"]) for r in old] == [("a.png", "from round 2")]
    (row,) = found
    assert os.fsencode(row["local_path"]) == exact and os.path.exists(exact)
    with psycopg.connect(dsn) as conn:
        kept = conn.execute("SELECT local_path_bytes FROM media ORDER BY id").fetchall()
        assert [None if b is None else bytes(b) for (b,) in kept] == [None, exact]
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == [
            (version,) for version in range(1, len(postgres_migrations.MIGRATIONS) + 1)
        ]
