"""The event outbox: events written in the same transaction as what they report, read back
in order by the dispatcher, with one delivery cursor per sink."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from forge_syncd.library.manifest.rows import Event, Handle


class Outbox:
    """The `events` and `sink_cursors` tables. `fresh`: events were added in the current
    transaction (the manifest then wakes the dispatcher once it commits)."""

    def __init__(self, manifest: Handle) -> None:
        self._manifest = manifest
        self.fresh = False

    def add(self, db: sqlite3.Connection, events: Iterable[Event]) -> None:
        """Add events inside the transaction `db` is in."""
        rows = [(e["type"], e.get("container"), json.dumps(e)) for e in events]
        if rows:
            db.executemany("INSERT INTO events (type, container, body) VALUES (?, ?, ?)", rows)
            self.fresh = True

    def record(self, events: Iterable[Event]) -> None:
        """Put events that record nothing else (a drain's verdict, media at risk) in the
        outbox, durably, in one transaction."""
        with self._manifest.transaction() as db:
            self.add(db, events)

    def after(self, last_id: int, limit: int = 100) -> list[Event]:
        """Return up to `limit` events with an id above `last_id`, oldest first."""
        with self._manifest.reading() as db:
            rows = db.execute(
                "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [{"id": row[0], **json.loads(row[1])} for row in rows]

    def cursor(self, sink: str) -> int:
        """Return the id of the last event delivered to `sink` (0: none yet)."""
        with self._manifest.reading() as db:
            row = db.execute("SELECT last_id FROM sink_cursors WHERE sink = ?", (sink,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, sink: str, last_id: int) -> None:
        """Record that `sink` has had every event up to `last_id`."""
        with self._manifest.transaction() as db:
            db.execute(
                "INSERT INTO sink_cursors (sink, last_id) VALUES (?, ?)"
                " ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
                (sink, last_id),
            )

    def pending(self, sink: str) -> int:
        """Return how many events `sink` has not had yet."""
        cursor = self.cursor(sink)
        with self._manifest.reading() as db:
            return int(
                db.execute("SELECT count(*) FROM events WHERE id > ?", (cursor,)).fetchone()[0]
            )
