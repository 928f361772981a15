"""A notification sink's outbox: messages made and not yet delivered, in order, each with
its key (made once, reused by every attempt) and the time it is due; and `sent`, the keys
of the last KEEP_SENT messages delivered, with the service's id for them. Tables in the
sink's state file (`state.py`)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class StateFile(Protocol):
    """What the outbox needs of the sink's state file (`state.NotifyState`)."""

    def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def meta(self, db: sqlite3.Connection, key: str) -> str | None: ...

    def set_meta(self, db: sqlite3.Connection, key: str, value: str) -> None: ...


KEEP_SENT = 1000


@dataclass(frozen=True)
class Pending:
    """A message in the outbox."""

    seq: int
    key: str
    kind: str
    due: float
    attempts: int
    body: dict[str, Any]


class Outbox:
    """The outbox of one sink's state (see the module doc). The methods given `db` run in
    the caller's transaction; the others take the state's lock themselves."""

    def __init__(self, state: StateFile) -> None:
        self._state = state

    def enqueue(self, db: sqlite3.Connection, kind: str, due: float, body: dict[str, Any]) -> str:
        """Put a message in the outbox; return its key ("fs-<salt>-<n>", unique to this
        state file)."""
        salt = self._state.meta(db, "salt")
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
        with self._state.reading() as db:
            rows = db.execute(
                "SELECT seq, key, kind, due, attempts, body FROM outbox WHERE due <= ?"
                " ORDER BY seq",
                (now,),
            ).fetchall()
        return [_pending(row) for row in rows]

    def next_due(self) -> float | None:
        """Return when the earliest message in the outbox is due (None: it is empty)."""
        with self._state.reading() as db:
            row = db.execute("SELECT min(due) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    def count(self) -> int:
        """Return how many messages wait."""
        with self._state.reading() as db:
            return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def attempted(self, seq: int) -> None:
        """Record that a message is being tried (from now on nothing joins it)."""
        with self._state.transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,))

    def delivered(self, message: Pending, now: float, service_id: str | None) -> None:
        """Move a delivered message from the outbox to `sent`."""
        with self._state.transaction() as db:
            db.execute("DELETE FROM outbox WHERE seq = ?", (message.seq,))
            cursor = db.execute(
                "INSERT OR REPLACE INTO sent (key, kind, sent_at, service_id) VALUES (?, ?, ?, ?)",
                (message.key, message.kind, now, service_id),
            )
            if message.kind == "landed":
                self._state.set_meta(db, "landed_at", str(now))
            if cursor.lastrowid and cursor.lastrowid % 100 == 0:
                db.execute("DELETE FROM sent WHERE rowid <= ?", (cursor.lastrowid - KEEP_SENT,))

    def sent(self) -> list[tuple[str, str, str | None]]:
        """Return (key, kind, service id) of the messages delivered, oldest first."""
        with self._state.reading() as db:
            rows = db.execute("SELECT key, kind, service_id FROM sent ORDER BY rowid").fetchall()
        return [(str(k), str(kind), sid) for k, kind, sid in rows]


def _pending(row: tuple[Any, ...]) -> Pending:
    seq, key, kind, due, attempts, body = row
    return Pending(int(seq), str(key), str(kind), float(due), int(attempts), json.loads(body))
