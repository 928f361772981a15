"""A notification sink's own durable state: `<state_dir>/notify/<sink>.sqlite`.

- `applied`: the events already taken into account, by (id, ts). The dispatcher delivers at
  least once (a crash before its cursor moves delivers a batch again): an event seen before
  changes nothing the second time. (id, ts) rather than the id alone, so a manifest made
  anew (ids from 1 again) is not mistaken for one already read. The last KEEP_APPLIED are
  kept: far more than a redelivered batch.
- `runs`: the totals of runs whose files are landing (their `sync_complete` not yet read).
- `health`, `at_risk`: per container, consecutive failed syncs and whether "at risk" was said.
- `outbox`: messages made and not yet delivered, in order, each with its key (made once,
  reused by every attempt) and the time it is due (a landed message waits for
  `min_interval`).
- `sent`: the keys of the last KEEP_SENT messages delivered, with the service's id for them.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEEP_APPLIED = 5000
KEEP_SENT = 1000
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


@dataclass(frozen=True)
class Pending:
    """A message in the outbox."""

    seq: int
    key: str
    kind: str
    due: float
    attempts: int
    body: dict[str, Any]


class NotifyState:
    """The state file of one notification sink (see the module doc). Thread-safe."""

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    # -- the outbox -----------------------------------------------------------------------
    def enqueue(self, db: sqlite3.Connection, kind: str, due: float, body: dict[str, Any]) -> str:
        """Put a message in the outbox; return its key ("fs-<salt>-<n>", unique to this
        state file)."""
        salt = self.meta(db, "salt")
        cursor = db.execute(
            "INSERT INTO outbox (key, kind, due, body) VALUES (?, ?, ?, ?)",
            (f"new-{secrets.token_hex(8)}", kind, due, json.dumps(body)),
        )
        key = f"fs-{salt}-{cursor.lastrowid}"
        db.execute("UPDATE outbox SET key = ? WHERE seq = ?", (key, cursor.lastrowid))
        return key

    @staticmethod
    def open_draft(db: sqlite3.Connection, kind: str) -> Pending | None:
        """Return the newest message of `kind` never attempted yet (runs may join it)."""
        row = db.execute(
            "SELECT seq, key, kind, due, attempts, body FROM outbox"
            " WHERE kind = ? AND attempts = 0 ORDER BY seq DESC LIMIT 1",
            (kind,),
        ).fetchone()
        return None if row is None else _pending(row)

    @staticmethod
    def drop_unsent(db: sqlite3.Connection, kind: str, container: str) -> None:
        """Remove the messages of `kind` about `container` never attempted yet (what they
        would say is no longer true)."""
        db.execute(
            "DELETE FROM outbox WHERE kind = ? AND attempts = 0"
            " AND json_extract(body, '$.container') = ?",
            (kind, container),
        )

    @staticmethod
    def last_due(db: sqlite3.Connection, kind: str) -> float | None:
        row = db.execute("SELECT max(due) FROM outbox WHERE kind = ?", (kind,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @staticmethod
    def update_body(db: sqlite3.Connection, seq: int, body: dict[str, Any]) -> None:
        db.execute("UPDATE outbox SET body = ? WHERE seq = ?", (json.dumps(body), seq))

    def due(self, now: float) -> list[Pending]:
        """Return the messages due at `now`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, kind, due, attempts, body FROM outbox WHERE due <= ?"
                " ORDER BY seq",
                (now,),
            ).fetchall()
        return [_pending(row) for row in rows]

    def next_due(self) -> float | None:
        """Return when the earliest message in the outbox is due (None: it is empty)."""
        with self._lock:
            row = self._db.execute("SELECT min(due) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def attempted(self, seq: int) -> None:
        """Record that a message is being tried (from now on nothing joins it)."""
        with self.transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def delivered(self, message: Pending, now: float, service_id: str | None) -> None:
        """Move a delivered message from the outbox to `sent`."""
        with self.transaction() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (message.seq,))
            cursor = db.execute(
                "INSERT OR REPLACE INTO sent (key, kind, sent_at, service_id) VALUES (?, ?, ?, ?)",
                (message.key, message.kind, now, service_id),
            )
            if message.kind == "landed":
                self.set_meta(db, "landed_at", str(now))
            if cursor.lastrowid and cursor.lastrowid % 100 == 0:
                db.execute("DELETE FROM sent WHERE rowid <= ?", (cursor.lastrowid - KEEP_SENT,))

    def sent(self) -> list[tuple[str, str, str | None]]:
        """Return (key, kind, service id) of the messages delivered, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, kind, service_id FROM sent ORDER BY rowid"
            ).fetchall()
        return [(str(k), str(kind), sid) for k, kind, sid in rows]


def _pending(row: tuple[Any, ...]) -> Pending:
    seq, key, kind, due, attempts, body = row
    return Pending(int(seq), str(key), str(kind), float(due), int(attempts), json.loads(body))
