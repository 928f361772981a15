"""A notification sink's own durable state: `<state_dir>/notify/<sink>.sqlite`.

- `applied`: the events already taken into account, by (id, ts). The dispatcher delivers at
  least once (a crash before its cursor moves delivers a batch again): an event seen before
  changes nothing the second time. (id, ts) rather than the id alone, so a manifest made
  anew (ids from 1 again) is not mistaken for one already read. The last KEEP_APPLIED are
  kept: far more than a redelivered batch.
- `runs`: the totals of runs whose files are landing (their `sync_complete` not yet read).
- `health`, `at_risk`: per container, consecutive failed syncs and whether "at risk" was said.
- `outbox`, `sent`: messages not yet delivered and the keys of those delivered (`outbox.py`,
  the `outbox` attribute).
- `meta`: `salt` (keys are unique to this file), `since` (events older than the sink are
  read but say nothing), `landed_at` (when the last landed message went).

Every change is one transaction (WAL, synchronous=FULL, as the manifest): a message is in the
outbox before the event that made it counts as applied, and leaves it only once delivered.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify.outbox import Outbox
from forge_syncd.library import sqlitetx

KEEP_APPLIED = 5000
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    ts TEXT NOT NULL,
    UNIQUE (event_id, ts)
);
CREATE TABLE IF NOT EXISTS runs (
    container TEXT NOT NULL,
    run_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (container, run_id)
);
CREATE TABLE IF NOT EXISTS health (
    container TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    failing_since TEXT
);
CREATE TABLE IF NOT EXISTS at_risk (container TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    due REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    sent_at REAL NOT NULL,
    service_id TEXT
);
"""


class NotifyState:
    """The state file of one notification sink (see the module doc); `outbox` holds its
    messages. Thread-safe."""

    def __init__(self, path: Path, now: float, backlog_s: float) -> None:
        """Open (creating) the state at `path`; a new one reads events from `backlog_s`
        before `now` on."""
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self.outbox = Outbox(self)
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            if self.meta(db, "salt") is None:
                self.set_meta(db, "salt", secrets.token_hex(4))
                self.set_meta(db, "since", str(now - backlog_s))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        with self._lock, sqlitetx.transaction(self._db):
            yield self._db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection, under the state's lock, to read with."""
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- meta ---------------------------------------------------------------------------
    @staticmethod
    def meta(db: sqlite3.Connection, key: str) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- events applied -----------------------------------------------------------------
    @staticmethod
    def was_applied(db: sqlite3.Connection, event_id: int, ts: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM applied WHERE event_id = ? AND ts = ?", (event_id, ts)
        ).fetchone()
        return row is not None

    @staticmethod
    def mark_applied(db: sqlite3.Connection, event_id: int, ts: str) -> None:
        cursor = db.execute(
            "INSERT OR IGNORE INTO applied (event_id, ts) VALUES (?, ?)", (event_id, ts)
        )
        if cursor.lastrowid and cursor.lastrowid % 500 == 0:
            db.execute("DELETE FROM applied WHERE seq <= ?", (cursor.lastrowid - KEEP_APPLIED,))

    # -- runs ---------------------------------------------------------------------------
    @staticmethod
    def run(db: sqlite3.Connection, container: str, run_id: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT body FROM runs WHERE container = ? AND run_id = ?", (container, run_id)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @staticmethod
    def save_run(db: sqlite3.Connection, container: str, run_id: str, body: dict[str, Any]) -> None:
        db.execute(
            "INSERT INTO runs (container, run_id, body) VALUES (?, ?, ?)"
            " ON CONFLICT (container, run_id) DO UPDATE SET body = excluded.body",
            (container, run_id, json.dumps(body)),
        )

    @staticmethod
    def take_runs(db: sqlite3.Connection, container: str) -> list[dict[str, Any]]:
        """Remove and return the totals of every run of `container` (in the order begun)."""
        rows = db.execute(
            "SELECT rowid, body FROM runs WHERE container = ? ORDER BY rowid", (container,)
        ).fetchall()
        db.execute("DELETE FROM runs WHERE container = ?", (container,))
        return [dict(json.loads(body)) for _, body in rows]

    # -- health and media at risk ---------------------------------------------------------
    @staticmethod
    def health(db: sqlite3.Connection, container: str) -> tuple[int, str | None]:
        row = db.execute(
            "SELECT failures, failing_since FROM health WHERE container = ?", (container,)
        ).fetchone()
        return (0, None) if row is None else (int(row[0]), row[1])

    @staticmethod
    def set_health(
        db: sqlite3.Connection, container: str, failures: int, failing_since: str | None
    ) -> None:
        db.execute(
            "INSERT INTO health (container, failures, failing_since) VALUES (?, ?, ?)"
            " ON CONFLICT (container) DO UPDATE SET failures = excluded.failures,"
            " failing_since = excluded.failing_since",
            (container, failures, failing_since),
        )

    @staticmethod
    def at_risk_said(db: sqlite3.Connection, container: str) -> bool:
        row = db.execute("SELECT 1 FROM at_risk WHERE container = ?", (container,)).fetchone()
        return row is not None

    @staticmethod
    def set_at_risk_said(db: sqlite3.Connection, container: str, said: bool) -> None:
        if said:
            db.execute("INSERT OR IGNORE INTO at_risk (container) VALUES (?)", (container,))
        else:
            db.execute("DELETE FROM at_risk WHERE container = ?", (container,))
