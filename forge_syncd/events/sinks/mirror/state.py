"""A mirror sink's durable state: `<state_dir>/mirror/<sink>.sqlite`.

- `pending`: the copies still to make, by mirror name (`<container>/<path>` as the library
  holds it, `.versions/...` for a version), with the library file's exact path, its size and
  the sha256 it must have, attempts, the last error and when it may be tried again;
- `mirrored`: what the mirror holds, verified: name, sha256, size, how it was checked
  (`sha256`, `sha1`, `md5` or `size`) and when — what `cleanup.require_mirror` reads
  (`holds.py`, a read-only connection from another thread or process);
- `applied`: the outbox events already taken into account, by (id, ts): the dispatcher
  delivers at least once, and a `file_synced` read twice must not queue old bytes again
  after their name was reused (as the notification sinks' state, `notify/state.py`).

Every change is one transaction (WAL, synchronous=FULL, as the manifest).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forge_syncd.library import sqlitetx

KEEP_APPLIED = 5000
SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL,
    ts TEXT NOT NULL,
    UNIQUE (event_id, ts)
);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    local_path BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS mirrored (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    checked TEXT NOT NULL,
    mirrored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS mirrored_sha256 ON mirrored (sha256);
"""


@dataclass(frozen=True)
class Copy:
    """One copy to make: the library file `local_path` (exact bytes of its path) to the
    mirror's `name`; its bytes must have `sha256`."""

    seq: int
    name: str
    local_path: bytes
    sha256: str
    size: int
    attempts: int = 0


@dataclass(frozen=True)
class Backlog:
    """What waits: files and bytes, the oldest wait in seconds, the last error of any."""

    files: int
    bytes: int
    oldest_s: float | None
    last_error: str | None


def state_path(state_dir: Path, sink: str) -> Path:
    """Return where the state of mirror sink `sink` lives under `state_dir`."""
    return state_dir / "mirror" / f"{sink}.sqlite"


class MirrorState:
    """The state file of one mirror sink (see the module doc). Thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        with self._lock, sqlitetx.transaction(self._db):
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- events ---------------------------------------------------------------------------
    def apply_once(self, event_id: int, ts: str) -> bool:
        """Record the event (id, ts) as applied; return False if it already was."""
        with self.transaction() as db:
            return self.mark_applied(db, event_id, ts)

    @staticmethod
    def mark_applied(db: sqlite3.Connection, event_id: int, ts: str) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO applied (event_id, ts) VALUES (?, ?)", (event_id, ts)
        )
        if cursor.rowcount == 0:
            return False
        if cursor.lastrowid and cursor.lastrowid % 500 == 0:
            db.execute("DELETE FROM applied WHERE seq <= ?", (cursor.lastrowid - KEEP_APPLIED,))
        return True

    @staticmethod
    def queue(db: sqlite3.Connection, name: str, local: bytes, sha256: str, size: int) -> bool:
        """Queue a copy of `local` (bytes `sha256`) to `name`, replacing one queued for that
        name; nothing when the mirror already holds these bytes there. Return whether it
        queued."""
        row = db.execute("SELECT sha256 FROM mirrored WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] == sha256:
            db.execute("DELETE FROM pending WHERE name = ?", (name,))
            return False
        db.execute(
            "INSERT INTO pending (name, local_path, sha256, size, queued_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET local_path = excluded.local_path,"
            " sha256 = excluded.sha256, size = excluded.size, attempts = 0, last_error = NULL",
            (name, local, sha256, size, time.time()),
        )
        return True

    @staticmethod
    def repoint(db: sqlite3.Connection, old: str, sha256: str, new: str, local: bytes) -> bool:
        """A library file moved (to `.versions/`): if its copy to `old` with bytes `sha256`
        is still queued, make it a copy of `local` to `new` instead. Return whether one
        was."""
        cursor = db.execute(
            "UPDATE OR REPLACE pending SET name = ?, local_path = ? WHERE name = ? AND sha256 = ?",
            (new, local, old, sha256),
        )
        return cursor.rowcount > 0

    # -- the copier -----------------------------------------------------------------------
    def next_copies(self, limit: int) -> list[Copy]:
        """Return up to `limit` queued copies, the oldest first, those tried more often
        after the others (a file that keeps failing does not hold up the rest)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, name, local_path, sha256, size, attempts FROM pending"
                " ORDER BY attempts, seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Copy(int(s), str(n), bytes(p), str(h), int(z), int(a)) for s, n, p, h, z, a in rows]

    def done(self, copy: Copy, checked: str) -> None:
        """Record `copy` made and verified (by `checked`); it leaves the queue unless the
        name was queued again meanwhile with other bytes."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO mirrored (name, sha256, size, checked, mirrored_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " sha256 = excluded.sha256, size = excluded.size, checked = excluded.checked,"
                " mirrored_at = excluded.mirrored_at",
                (copy.name, copy.sha256, copy.size, checked, time.time()),
            )
            db.execute(
                "DELETE FROM pending WHERE name = ? AND sha256 = ?", (copy.name, copy.sha256)
            )

    def drop(self, copy: Copy) -> None:
        """Remove `copy` from the queue (its bytes are no longer where it says)."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM pending WHERE seq = ? AND name = ? AND sha256 = ?",
                (copy.seq, copy.name, copy.sha256),
            )

    def failed(self, copy: Copy, error: str) -> None:
        """Record a failed attempt at `copy`."""
        with self.transaction() as db:
            db.execute(
                "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                (error[:500], copy.seq),
            )

    # -- status -----------------------------------------------------------------------------
    def backlog(self, now: float) -> Backlog:
        """Return what waits (see `Backlog`)."""
        with self._lock:
            files, nbytes, oldest = self._db.execute(
                "SELECT count(*), coalesce(sum(size), 0), min(queued_at) FROM pending"
            ).fetchone()
            error = self._db.execute(
                "SELECT last_error FROM pending WHERE last_error IS NOT NULL"
                " ORDER BY attempts DESC, seq LIMIT 1"
            ).fetchone()
        return Backlog(
            int(files),
            int(nbytes),
            None if oldest is None else max(0.0, now - float(oldest)),
            None if error is None else str(error[0]),
        )

    def mirrored_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM mirrored").fetchone()[0])

    def held(self, name: str) -> tuple[str, int] | None:
        """Return (sha256, size) of what the mirror holds under `name`, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256, size FROM mirrored WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))
