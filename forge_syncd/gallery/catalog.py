"""The gallery's read-only view of a SQLite catalog (the `catalog` sink's file).

Searches go through `catalog/sqlite_search.py` (the same plan as `forge-syncctl find`), with
the gallery's filters and a keyset cursor; this module only reads the rows those ids name,
one item with its versions, facet counts and the rows added after an id (live updates).
Each thread has its own read-only connection (`mode=ro`, `query_only`): nothing here writes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.sqlite_search import build_ids
from forge_syncd.gallery.source import (
    CHANGE_KEYS,
    ITEM_KEYS,
    LIST_KEYS,
    PROMPT_PREVIEW,
    VERSION_KEYS,
    CatalogUnavailable,
    FacetCache,
    count_facets,
    plain,
    why,
)

LIST = ", ".join(
    f"substr(prompt, 1, {PROMPT_PREVIEW})" if key == "prompt" else key for key in LIST_KEYS
)


class SqliteCatalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.facet_cache = FacetCache(self._count_facets)
        self.db()  # fail now, with a clear message, when it cannot be opened

    def db(self) -> sqlite3.Connection:
        """This thread's read-only connection to the catalog."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if not self.path.is_file():
                raise CatalogUnavailable(f"no catalog at {self.path} (has the daemon run?)")
            uri = self.path.absolute().as_uri() + "?mode=ro"
            try:
                db = sqlite3.connect(uri, uri=True, timeout=10, check_same_thread=False)
                db.execute("PRAGMA query_only = 1")
                db.execute("SELECT 1 FROM media, media_changes LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise CatalogUnavailable(
                    f"cannot read the catalog {self.path}: {why(exc)}"
                ) from None
            self._local.db = db
        return db

    def search(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """The rows (LIST_KEYS) `query` finds, newest first (mtime, then id)."""
        db = self.db()
        ids = build_ids(db, query)
        if ids is None:
            return []
        sql = f"SELECT {LIST} FROM media WHERE id IN ({ids[0]}) ORDER BY mtime DESC, id DESC"  # noqa: S608
        return [plain(dict(zip(LIST_KEYS, r, strict=True))) for r in db.execute(sql, ids[1])]

    def changed_after(self, last: int, limit: int = 100) -> list[dict[str, Any]]:
        """The rows added or updated after change `last`, in the order they were written
        (`media_changes`: live updates)."""
        sql = (
            f"SELECT seq, {LIST} FROM media_changes JOIN media ON id = media_id"  # noqa: S608
            " WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        return [
            plain(dict(zip(CHANGE_KEYS, r, strict=True)))
            for r in self.db().execute(sql, (last, limit))
        ]

    def last_change(self) -> int:
        row = self.db().execute("SELECT max(seq) FROM media_changes").fetchone()
        return int(row[0] or 0)

    def item(self, item_id: int) -> dict[str, Any] | None:
        """Every column of one row, and `versions`: the rows of the same file (container and
        path), newest first (id, mtime, size, versioned_at)."""
        db = self.db()
        found = db.execute(
            f"SELECT {', '.join(ITEM_KEYS)} FROM media WHERE id = ?",  # noqa: S608
            (item_id,),
        ).fetchone()
        if found is None:
            return None
        row = plain(dict(zip(ITEM_KEYS, found, strict=True)))
        row["versions"] = [dict(zip(VERSION_KEYS, v, strict=True)) for v in versions_of(db, row)]
        return row

    def source_of(self, sha256: str) -> dict[str, Any] | None:
        """The newest row of a file with this content (`media_by_sha256`), or None."""
        found = (
            self.db()
            .execute("SELECT id FROM media WHERE sha256 = ? ORDER BY id DESC LIMIT 1", (sha256,))
            .fetchone()
        )
        return None if found is None else self.item(int(found[0]))

    def facets(self) -> dict[str, Any]:
        """Each facet's most common values with their counts, the mtime range and the total,
        counted on indexes only (at most FACET_TTL_S old: `FacetCache`)."""
        return self.facet_cache.get()

    def _count_facets(self) -> dict[str, Any]:
        return count_facets(self.db().execute, "?")


def versions_of(db: sqlite3.Connection, row: dict[str, Any]) -> list[tuple[Any, ...]]:
    """(id, mtime, size, versioned_at) of the rows of one file (container and path), newest
    first, on indexes only: the current row by `media_current`, earlier versions by their
    `local_path` under the container's `.versions/` (`library/versions.py`: the same folder,
    the name's start kept) on `media_by_local_path` (`+`: not by media_by_container, a walk
    of every row of the container)."""
    container, path, local = row["container"], row["path"], row["local_path"]
    found = db.execute(
        "SELECT id, mtime, size, versioned_at FROM media"
        " WHERE container = ? AND path = ? AND versioned_at IS NULL",
        (container, path),
    ).fetchall()
    base = None
    if row["versioned_at"] is None and local.endswith("/" + path):
        base = local[: -len(path)]
    elif "/.versions/" in local:
        base = local.split("/.versions/")[0] + "/"
    if base is not None:
        folder, _, name = path.rpartition("/")
        prefix = f"{base}.versions/{folder + '/' if folder else ''}{name.split('.')[0][:20]}"
        found += db.execute(
            "SELECT id, mtime, size, versioned_at FROM media WHERE local_path >= ?"
            " AND local_path < ? AND +container = ? AND +path = ? AND versioned_at IS NOT NULL"
            " LIMIT 100",
            (prefix, prefix + "\U0010ffff", container, path),
        ).fetchall()
    return sorted(set(found), key=lambda v: (v[1], v[0]), reverse=True)
