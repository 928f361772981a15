"""The gallery's read-only view of a SQLite catalog (the `catalog` sink's file).

Searches go through `catalog/sqlite_search.py` (the same plan as `forge-syncctl find`), with
the gallery's filters and a keyset cursor; this module only reads the rows those ids name,
one item with its versions, facet counts and the rows added after an id (live updates).
Each thread has its own read-only connection (`mode=ro`, `query_only`): nothing here writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.schema import COLUMNS
from forge_syncd.catalog.sqlite_search import build_ids

PROMPT_PREVIEW = 500  # characters of a prompt a grid row carries
LIST = (
    "id, container, path, local_path, size, mtime, sha256, generator,"
    f" substr(prompt, 1, {PROMPT_PREVIEW}), model, sampler, seed, width, height, duration_s,"
    " versioned_at, purged_at"
)
LIST_KEYS = (
    "id",
    "container",
    "path",
    "local_path",
    "size",
    "mtime",
    "sha256",
    "generator",
    "prompt",
    "model",
    "sampler",
    "seed",
    "width",
    "height",
    "duration_s",
    "versioned_at",
    "purged_at",
)
ITEM_KEYS = ("id", *(column.name for column in COLUMNS))
JSON_KEYS = ("loras", "samplers")
FACETS = ("container", "generator", "model", "sampler")
FACET_TOP = 50
FACET_TTL_S = 60.0
SHA_MEMO = 100_000  # sha256 -> id of rows a page listed (thumbnail requests follow)


class CatalogUnavailable(Exception):
    """The catalog cannot be opened or read (the message says why)."""


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """Given a row as read, return it JSON-able: a non-UTF-8 `local_path` as text with
    surrogate escapes, JSON lists decoded, a seed kept as text (past 2^63) as an int."""
    local = row.get("local_path")
    if isinstance(local, bytes):
        row["local_path"] = local.decode("utf-8", "surrogateescape")
    for key in JSON_KEYS:
        if isinstance(row.get(key), str):
            try:
                row[key] = json.loads(row[key])
            except ValueError:
                row[key] = None
    seed = row.get("seed")
    if isinstance(seed, str) and seed.lstrip("-").isdigit() and len(seed) <= 40:
        row["seed"] = int(seed)
    return row


class GalleryCatalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sha: OrderedDict[str, int] = OrderedDict()
        self._facets: tuple[float, int, dict[str, Any]] | None = None
        self._counting = threading.Lock()
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
                db.execute("SELECT 1 FROM media LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise CatalogUnavailable(f"cannot read the catalog {self.path}: {exc}") from None
            self._local.db = db
        return db

    def search(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """The rows (LIST_KEYS) `query` finds, newest first (mtime, then id)."""
        db = self.db()
        ids = build_ids(db, query)
        if ids is None:
            return []
        sql = f"SELECT {LIST} FROM media WHERE id IN ({ids[0]}) ORDER BY mtime DESC, id DESC"  # noqa: S608
        rows = [plain(dict(zip(LIST_KEYS, r, strict=True))) for r in db.execute(sql, ids[1])]
        self._remember(rows)
        return rows

    def after_id(self, last_id: int, limit: int = 100) -> list[dict[str, Any]]:
        """The rows added after row `last_id`, oldest first (live updates)."""
        sql = f"SELECT {LIST} FROM media WHERE id > ? ORDER BY id LIMIT ?"  # noqa: S608
        rows = [
            plain(dict(zip(LIST_KEYS, r, strict=True)))
            for r in self.db().execute(sql, (last_id, limit))
        ]
        self._remember(rows)
        return rows

    def max_id(self) -> int:
        row = self.db().execute("SELECT max(id) FROM media").fetchone()
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
        row["versions"] = [
            dict(zip(("id", "mtime", "size", "versioned_at"), v, strict=True))
            for v in versions_of(db, row)
        ]
        self._remember([row])
        return row

    def source_of(self, sha256: str) -> dict[str, Any] | None:
        """The row a page or API answer listed with this sha256, or None: sha256 has no
        index, so a thumbnail no answer named (a guessed or stale URL) is not looked for
        (a full scan: half a second at 350,000 rows)."""
        with self._lock:
            known = self._sha.get(sha256)
        if known is None:
            return None
        row = self.item(known)
        return row if row is not None and row["sha256"] == sha256 else None

    def facets(self) -> dict[str, Any]:
        """Each facet's most common values with their counts, the mtime range and the total.
        Counting reads every row (generator and sampler have no index: about a second at
        350,000 rows), so a page gets the last counts at once and, when they are older
        than FACET_TTL_S, a background thread counts again; only the first call waits."""
        cached = self._facets
        if cached is None:
            return self._count_facets()
        if time.monotonic() - cached[0] >= FACET_TTL_S and self._counting.acquire(blocking=False):
            threading.Thread(target=self._recount, name="facets", daemon=True).start()
        return cached[2]

    def _recount(self) -> None:
        try:
            self._count_facets()
        except sqlite3.Error:
            pass  # the last counts stay; the next page asks again
        finally:
            self._counting.release()

    def _count_facets(self) -> dict[str, Any]:
        db = self.db()
        counted: dict[str, Any] = {}
        for column in FACETS:
            counted[column] = [
                {"value": value, "count": count}
                for value, count in db.execute(
                    f"SELECT {column}, count(*) AS n FROM media WHERE {column} IS NOT NULL"  # noqa: S608
                    f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?",
                    (FACET_TOP,),
                )
            ]
        counted["lora"] = [
            {"value": value, "count": count}
            for value, count in db.execute(
                "SELECT name, count(*) AS n FROM media_loras GROUP BY name ORDER BY n DESC, name"
                " LIMIT ?",
                (FACET_TOP,),
            )
        ]
        counted["size"] = [
            {"value": f"{width}x{height}", "count": count}
            for width, height, count in db.execute(
                "SELECT width, height, count(*) AS n FROM media WHERE width IS NOT NULL"
                " AND height IS NOT NULL GROUP BY width, height ORDER BY n DESC LIMIT ?",
                (FACET_TOP,),
            )
        ]
        first, last, total, read = db.execute(
            "SELECT min(mtime), max(mtime), count(*), count(generator) FROM media"
        ).fetchone()
        counted["metadata"] = [
            {"value": "yes", "count": read},
            {"value": "no", "count": total - read},
        ]
        counted["mtime"] = {"first": first, "last": last}
        counted["total"] = total
        self._facets = (time.monotonic(), 0, counted)
        return counted

    def _remember(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                if isinstance(row.get("sha256"), str):
                    self._sha[row["sha256"]] = row["id"]
                    self._sha.move_to_end(row["sha256"])
            while len(self._sha) > SHA_MEMO:
                self._sha.popitem(last=False)


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
