"""`catalog`: a SQLite table `media`, one row per synced file, with the generation metadata
read from the file itself (prompt, seed, model, ...). `file_purged` fills `purged_at`.

Reading metadata never fails a delivery: an unreadable or hostile file gets a row without
metadata (and a log record).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.logs import get_logger

SCHEMA = """
CREATE TABLE IF NOT EXISTS media (
    container TEXT NOT NULL,
    path TEXT NOT NULL,
    local_path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime TEXT NOT NULL,
    sha256 TEXT,
    purged_at TEXT,
    generator TEXT,
    prompt TEXT,
    negative_prompt TEXT,
    seed INTEGER,
    steps INTEGER,
    sampler TEXT,
    cfg_scale REAL,
    model TEXT,
    width INTEGER,
    height INTEGER,
    metadata_json TEXT,
    PRIMARY KEY (container, path)
)
"""
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
)

# Built once from the constant column list above (no outside input reaches the SQL text).
INSERT = (
    "INSERT OR REPLACE INTO media (container, path, local_path, size, mtime, sha256, purged_at, "  # noqa: S608
    + ", ".join(FIELDS)
    + ") VALUES (?, ?, ?, ?, ?, ?, NULL, "
    + ", ".join("?" * len(FIELDS))
    + ")"
)


class CatalogSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        path = Path(options["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(SCHEMA)
        self.log = get_logger(sink=name)

    def deliver(self, event: dict[str, Any]) -> None:
        if event["type"] == "file_synced":
            self._synced(event)
        elif event["type"] == "file_purged":
            self.db.execute(
                "UPDATE media SET purged_at = ? WHERE container = ? AND path = ?",
                (event["purged_at"], event["container"], event["path"]),
            )

    def _synced(self, event: dict[str, Any]) -> None:
        info = self._metadata(event["local_path"], event["path"])
        values = [getattr(info, field) for field in FIELDS]
        self.db.execute(
            INSERT,
            (
                event["container"],
                event["path"],
                event["local_path"],
                event["size"],
                event["mtime"],
                event.get("sha256"),
                *values,
            ),
        )

    def _metadata(self, local_path: str, path: str) -> GenerationInfo:
        try:
            return read_generation_info(os.fsencode(local_path))
        except Exception as exc:
            self.log.warning("metadata_unreadable", path=path, error=str(exc))
            return GenerationInfo()

    def close(self) -> None:
        self.db.close()
