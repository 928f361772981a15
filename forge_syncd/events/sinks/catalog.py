"""`catalog`: a SQLite table `media`, one row per synced file version, with the generation
metadata read from the file itself (prompt, seed, model, ...). `file_purged` fills
`purged_at`; `file_versioned` moves a row to its file's place under `.versions/`
(`versioned_at` set), so an earlier image keeps its row when a new one takes its name.

Reading metadata never fails a delivery: an unreadable or hostile file gets a row without
metadata (and a log record).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.logs import get_logger

ROUND_1_COLUMNS = (
    ("container", "TEXT NOT NULL"),
    ("path", "TEXT NOT NULL"),
    ("local_path", "TEXT NOT NULL"),
    ("size", "INTEGER NOT NULL"),
    ("mtime", "TEXT NOT NULL"),
    ("sha256", "TEXT"),
    ("purged_at", "TEXT"),
    ("generator", "TEXT"),
    ("prompt", "TEXT"),
    ("negative_prompt", "TEXT"),
    ("seed", "INTEGER"),
    ("steps", "INTEGER"),
    ("sampler", "TEXT"),
    ("cfg_scale", "REAL"),
    ("model", "TEXT"),
    ("width", "INTEGER"),
    ("height", "INTEGER"),
    ("metadata_json", "TEXT"),
)
COLUMNS = ", ".join(f"{name} {kind}" for name, kind in ROUND_1_COLUMNS)
NAMES = ", ".join(name for name, _ in ROUND_1_COLUMNS)
# `PRAGMA user_version` holds the schema version; MIGRATIONS[i] upgrades from i to i+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: one row per file *version* (SPEC "Catalog, round 2"): a row follows its file into
    # `.versions/` (versioned_at set, local_path updated); at most one current row a path.
    # Version 0 (round 1) had one row per (container, path): its rows are carried over.
    (
        "CREATE TABLE IF NOT EXISTS media (" + COLUMNS + ")",
        "ALTER TABLE media RENAME TO media_v0",
        "CREATE TABLE media (id INTEGER PRIMARY KEY, "
        # `seed` without a type: ComfyUI seeds go up to 2^64 - 1, past SQLite's INTEGER,
        # so a seed above 2^63 - 1 is kept exactly, as text.
        + COLUMNS.replace("seed INTEGER", "seed")
        + ", versioned_at TEXT, metadata_error TEXT)",
        "INSERT INTO media (" + NAMES + ") SELECT " + NAMES + " FROM media_v0",  # noqa: S608
        "DROP TABLE media_v0",
        "CREATE UNIQUE INDEX media_current ON media (container, path) WHERE versioned_at IS NULL",
        "CREATE INDEX media_by_local_path ON media (local_path)",
    ),
)
FIELDS: tuple[str, ...] = (
    "generator",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "sampler",
    "cfg_scale",
    "model",
    "width",
    "height",
    "metadata_json",
    "metadata_error",
)
INT64 = range(-(2**63), 2**63)

# Built once from the constant column lists above (no outside input reaches the SQL text).
INSERT = (
    "INSERT INTO media (container, path, local_path, size, mtime, sha256, versioned_at, "  # noqa: S608
    + ", ".join(FIELDS)
    + ") VALUES (?, ?, ?, ?, ?, ?, ?, "
    + ", ".join("?" * len(FIELDS))
    + ")"
)
UPDATE_CURRENT = (
    "UPDATE media SET local_path = ?, size = ?, mtime = ?, sha256 = ?, purged_at = NULL, "  # noqa: S608
    + ", ".join(f"{field} = ?" for field in FIELDS)
    + " WHERE container = ? AND path = ? AND versioned_at IS NULL"
)


class CatalogSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        path = Path(options["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.log = get_logger(sink=name)
        migrate(self.db)

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

    def _synced(self, event: dict[str, Any]) -> None:
        """The path's current row now describes this file (a new row if it had none)."""
        info = self._metadata(event["local_path"], event["path"])
        values = column_values(info)
        file = (event["local_path"], event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            if self.db.execute(UPDATE_CURRENT, (*file, *values, *where)).rowcount == 0:
                self.db.execute(INSERT, (*where, *file, None, *values))

    def _versioned(self, event: dict[str, Any]) -> None:
        """The path's current row follows its file into `.versions/` (a row is made from
        the version file if there is none, e.g. a catalog added after the first sync)."""
        version = (event["local_path"], event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            done = self.db.execute(
                "SELECT 1 FROM media WHERE local_path = ? AND versioned_at IS NOT NULL",
                (event["local_path"],),
            ).fetchone()
            if done is not None:
                return
            moved = self.db.execute(
                "UPDATE media SET local_path = ?, size = ?, mtime = ?,"
                " sha256 = coalesce(?, sha256), versioned_at = ?"
                " WHERE container = ? AND path = ? AND versioned_at IS NULL",
                (*version, event["versioned_at"], *where),
            )
            if moved.rowcount == 0:
                info = self._metadata(event["local_path"], event["path"])
                values = column_values(info)
                self.db.execute(INSERT, (*where, *version, event["versioned_at"], *values))

    def _metadata(self, local_path: str, path: str) -> GenerationInfo:
        """Read the file's generation metadata (bounded in size and time; never raises):
        what could not be read is in `metadata_error`, and the row is written anyway."""
        info = read_generation_info(os.fsencode(local_path))
        if info.metadata_error is not None:
            self.log.warning("metadata_unreadable", path=path, error=info.metadata_error)
        return info

    def close(self) -> None:
        self.db.close()


def column_values(info: GenerationInfo) -> list[object]:
    """Return the metadata columns of a row; an integer SQLite cannot hold as INTEGER (a
    ComfyUI seed above 2^63 - 1) as its exact decimal text."""
    values: list[object] = []
    for field in FIELDS:
        value = getattr(info, field)
        values.append(str(value) if isinstance(value, int) and value not in INT64 else value)
    return values


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (ROLLBACK on error)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection) -> None:
    """Bring a catalog database (new, or made by an earlier forge-syncd) to the current
    schema, in one transaction."""
    with transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"catalog schema version {version} is newer than this forge-syncd understands"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
