"""`duplicate_of` in the SQLite catalog (issue 29): each row names the first row with the
same bytes (sha256 and size), kept by the database itself as rows are added, get other
bytes or are deleted; the gallery's `duplicates=hide` shows only the first of each."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.catalog.sqlite_search import search_rows
from forge_syncd.events.sinks.catalog import CatalogSink
from forge_syncd.gallery.api import BadRequest, search_query

SAME, OTHER = "a" * 64, "b" * 64


def synced(container: str, name: str, sha256: str | None, size: int = 10) -> dict[str, Any]:
    return {
        "type": "file_synced",
        "container": container,
        "path": name,
        "local_path": f"/media/{container}/{name}",
        "size": size,
        "mtime": "2026-12-01T00:00:00.000000Z",
        "sha256": sha256,
    }


def duplicates(path: Path) -> dict[str, int | None]:
    db = sqlite3.connect(path)
    try:
        ids = dict(db.execute("SELECT id, container || '/' || path FROM media").fetchall())
        return {
            ids[row_id]: None if of is None else ids[of]
            for row_id, of in db.execute("SELECT id, duplicate_of FROM media")
        }
    finally:
        db.close()


def test_duplicate_of_names_the_first_row_with_the_same_bytes(tmp_path: Path) -> None:
    """Rows with one sha256 and size point at the first of them; another size, another
    sha256 or none point nowhere; a row that gets other bytes leaves its set (the next
    row becomes the first), and a deleted first row hands its place on."""
    path = tmp_path / "catalog.sqlite"
    sink = CatalogSink("catalog", {"path": path})
    try:
        for event in (
            synced("a", "one.png", SAME),
            synced("b", "two.png", SAME),
            synced("c", "three.png", SAME),
            synced("c", "bigger.png", SAME, size=11),
            synced("c", "other.png", OTHER),
            synced("c", "none.png", None),
        ):
            sink.deliver(event)
        assert duplicates(path) == {
            "a/one.png": None,
            "b/two.png": "a/one.png",
            "c/three.png": "a/one.png",
            "c/bigger.png": None,
            "c/other.png": None,
            "c/none.png": None,
        }
        sink.deliver(synced("a", "one.png", OTHER))  # new bytes under the first name
        found = duplicates(path)
        assert found["a/one.png"] is None and found["c/other.png"] == "a/one.png"
        assert found["b/two.png"] is None and found["c/three.png"] == "b/two.png"
        db = sqlite3.connect(path)
        with db:
            db.execute("DELETE FROM media WHERE path = 'two.png'")
        db.close()
        assert duplicates(path)["c/three.png"] is None
    finally:
        sink.close()


def test_the_gallery_hides_duplicates_when_asked(tmp_path: Path) -> None:
    """`/api/search?duplicates=hide` drops the rows whose bytes an earlier row holds;
    `show` (the default) keeps them; another value is a clear 400."""
    path = tmp_path / "catalog.sqlite"
    sink = CatalogSink("catalog", {"path": path})
    try:
        for name in ("one.png", "two.png"):
            sink.deliver(synced("a", name, SAME))
        sink.deliver(synced("a", "three.png", OTHER))
    finally:
        sink.close()
    db = sqlite3.connect(path)
    try:
        shown = search_rows(db, search_query({}))
        hidden = search_rows(db, search_query({"duplicates": "hide"}))
    finally:
        db.close()
    assert sorted(r["path"] for r in shown) == ["one.png", "three.png", "two.png"]
    assert sorted(r["path"] for r in hidden) == ["one.png", "three.png"]
    with pytest.raises(BadRequest, match="duplicates: expected show or hide"):
        search_query({"duplicates": "maybe"})
