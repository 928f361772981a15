"""`catalog`: a SQLite table `media`, one row per synced file version, with the generation
metadata read from the file itself (prompt, seed, model, LoRAs, ...). `file_purged` fills
`purged_at`; `file_versioned` moves a row to its file's place under `.versions/`
(`versioned_at` set), so an earlier image keeps its row when a new one takes its name.

Reading metadata never fails a delivery: an unreadable or hostile file gets a row without
metadata (and a log record).

`local_path` is the file's exact path: text for a UTF-8 path (every path forge-syncd makes
from UTF-8 names), a BLOB of the exact bytes for one that is not (the event's
`local_path_b64`): metadata is read from that real file, and `find` returns it as text with
each byte that is not UTF-8 as a lone surrogate (Python's surrogateescape: `os.fsencode`
gives the bytes back). `path` stays the displayed form (`\\xNN` escapes), as events name it.

`find` answers `forge-syncctl find` on a read-only connection of its own (WAL: a query never
waits on a delivery and never holds one up): `catalog/sqlite_search.py`. The schema and its
migrations are in `catalog/`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from forge_syncd.catalog import schema
from forge_syncd.catalog.dialect import SQLITE
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.sqlite_migrations import migrate
from forge_syncd.catalog.sqlite_search import search_rows
from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.library.events import exact_local_path
from forge_syncd.library.sqlitetx import transaction
from forge_syncd.logs import get_logger

# Built once from schema's column lists (no outside input reaches the SQL text).
_WRITTEN = (*schema.KEY, *schema.FILE, "versioned_at", *schema.METADATA)
INSERT = (
    f"INSERT INTO media ({', '.join(_WRITTEN)})"  # noqa: S608
    f" VALUES ({', '.join('?' * len(_WRITTEN))})"
)
UPDATE_CURRENT = (
    "UPDATE media SET "  # noqa: S608
    + ", ".join(f"{name} = ?" for name in schema.FILE)
    + ", purged_at = NULL, "
    + ", ".join(f"{name} = ?" for name in schema.METADATA)
    + " WHERE container = ? AND path = ? AND versioned_at IS NULL"
)


class CatalogSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.path = Path(options["path"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Another process (a gallery, the sqlite3 shell) may hold the write lock: wait.
        self.db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.log = get_logger(sink=name)
        migrate(self.db)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def deliver(self, event: dict[str, Any]) -> None:
        """Apply one event; idempotent, since delivery is at least once."""
        if event["type"] == "file_synced":
            self._synced(event)
        elif event["type"] == "file_versioned":
            self._versioned(event)
        elif event["type"] == "file_purged":
            self.db.execute(
                "UPDATE media SET purged_at = ? WHERE container = ? AND path = ?"
                " AND versioned_at IS NULL",
                (event["purged_at"], event["container"], event["path"]),
            )
        elif event["type"] == "version_pruned":  # the version's file is gone: so is its row
            self.db.execute(
                "DELETE FROM media WHERE container = ? AND local_path = ?"
                " AND versioned_at IS NOT NULL",
                (event["container"], stored_path(exact_local_path(event))),
            )

    def _synced(self, event: dict[str, Any]) -> None:
        """The path's current row now describes this file (a new row if it had none)."""
        local = exact_local_path(event)
        info = self._metadata(local, event["path"])
        values = SQLITE.metadata_values(info)
        file = (stored_path(local), event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            if self.db.execute(UPDATE_CURRENT, (*file, *values, *where)).rowcount == 0:
                self.db.execute(INSERT, (*where, *file, None, *values))

    def _versioned(self, event: dict[str, Any]) -> None:
        """The path's current row follows its file into `.versions/` when it describes
        that file (same size and mtime); otherwise (a catalog added after the first sync,
        or a backfill replaying a version after the current file) the version gets a row
        made from the version file, and the current row stays."""
        local = exact_local_path(event)
        version = (stored_path(local), event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            done = self.db.execute(
                "SELECT 1 FROM media WHERE local_path = ? AND versioned_at IS NOT NULL",
                (version[0],),
            ).fetchone()
            if done is not None:
                return
            moved = self.db.execute(
                "UPDATE media SET local_path = ?, size = ?, mtime = ?,"
                " sha256 = coalesce(?, sha256), versioned_at = ?"
                " WHERE container = ? AND path = ? AND versioned_at IS NULL"
                " AND size = ? AND mtime = ?",
                (*version, event["versioned_at"], *where, event["size"], event["mtime"]),
            )
            if moved.rowcount == 0:
                info = self._metadata(local, event["path"])
                values = SQLITE.metadata_values(info)
                self.db.execute(INSERT, (*where, *version, event["versioned_at"], *values))

    def _metadata(self, local_path: bytes, path: str) -> GenerationInfo:
        """Read the file's generation metadata (bounded in size and time; never raises):
        what could not be read is in `metadata_error`, and the row is written anyway."""
        info = read_generation_info(local_path)
        if info.metadata_error is not None:
            self.log.warning("metadata_unreadable", path=path, error=info.metadata_error)
        return info

    def find(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """Given a search, return the matching rows (FOUND_KEYS; `loras` decoded, `seed` an
        int), newest first by mtime, at most `query.limit` (capped at MAX_LIMIT).

        User text never becomes SQL or FTS syntax: every value is a parameter and every
        prompt word is matched as a quoted FTS5 string. Raise sqlite3.Error if the catalog
        cannot be read."""
        with self._reader_lock:
            return search_rows(self._read_connection(), query)

    def _read_connection(self) -> sqlite3.Connection:
        """The read-only connection searches use (opened once, kept: its page cache)."""
        if self._reader is None:
            uri = self.path.absolute().as_uri() + "?mode=ro"
            self._reader = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
            self._reader.execute("PRAGMA query_only = 1")
        return self._reader

    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self.db.close()


def stored_path(local: bytes) -> str | bytes:
    """Given a file's exact path, return its `local_path` value: the text of a UTF-8 path,
    the bytes themselves (a BLOB) of any other."""
    try:
        return local.decode("utf-8")
    except UnicodeDecodeError:
        return local
