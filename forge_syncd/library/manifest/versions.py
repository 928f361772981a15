"""The manifest's `versions` table: earlier library files moved under `.versions/` (see
forge_syncd/versions.py): announced as pending, recorded as kept, then pruned."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from forge_syncd.library.manifest.outbox import Outbox
from forge_syncd.library.manifest.rows import (
    VERSION_COLUMNS,
    Event,
    Handle,
    VersionMove,
    VersionState,
    db_mtime,
    utc_now,
    version_move,
)


class VersionRows:
    """The version rows: each move announced before it is made, then kept or dropped."""

    def __init__(self, manifest: Handle, outbox: Outbox) -> None:
        self._manifest = manifest
        self._outbox = outbox

    def record_pending(self, container: str, moves: Iterable[VersionMove]) -> None:
        """Announce moves into `.versions/` before they are made (see versions.py)."""
        with self._manifest.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO versions (container, version_path, path, size, mtime_ns,"
                " sha256, versioned_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                [
                    (
                        container,
                        m.version_path,
                        m.path,
                        m.size,
                        db_mtime(m.mtime_ns),
                        m.sha256,
                        m.versioned_at,
                    )
                    for m in moves
                ],
            )

    def keep(self, db: sqlite3.Connection, container: str, moves: Iterable[VersionMove]) -> None:
        """Record announced moves as made (kept), inside the transaction `db` is in."""
        db.executemany(
            "UPDATE versions SET state = 'kept' WHERE container = ? AND version_path = ?",
            [(container, m.version_path) for m in moves],
        )

    def _in_state(
        self, container: str, state: VersionState, before: str | None = None
    ) -> list[VersionMove]:
        """Return the version rows of `container` in `state`, oldest first; with `before`,
        only those versioned at or before it."""
        with self._manifest.reading() as db:
            rows = db.execute(
                f"SELECT {VERSION_COLUMNS} FROM versions"  # noqa: S608 - a constant
                " WHERE container = ? AND state = ? AND versioned_at <= coalesce(?, versioned_at)"
                " ORDER BY versioned_at, version_path",
                (container, state.value, before),
            ).fetchall()
        return [version_move(r) for r in rows]

    def pending(self, container: str) -> list[VersionMove]:
        """Return the moves announced but never recorded as kept (a crash came between)."""
        return self._in_state(container, VersionState.PENDING)

    def kept(self, container: str, before: str | None = None) -> list[VersionMove]:
        """Return the versions kept, oldest first; with `before` (ISO 8601 UTC), only those
        versioned at or before it."""
        return self._in_state(container, VersionState.KEPT, before)

    def drop_pending(self, container: str, moves: Iterable[VersionMove]) -> None:
        """Forget announced moves that were never made."""
        with self._manifest.transaction() as db:
            db.executemany(
                "DELETE FROM versions WHERE container = ? AND version_path = ?"
                " AND state = 'pending'",
                [(container, m.version_path) for m in moves],
            )

    def record_pruned(
        self, container: str, moves: Iterable[VersionMove], events: Iterable[Event] = ()
    ) -> None:
        """Record versions as pruned (their files deleted under `keep_versions`), with their
        events, in one transaction."""
        now = utc_now()
        with self._manifest.transaction() as db:
            self._outbox.add(db, events)
            db.executemany(
                "UPDATE versions SET state = 'pruned', pruned_at = ?"
                " WHERE container = ? AND version_path = ?",
                [(now, container, m.version_path) for m in moves],
            )
