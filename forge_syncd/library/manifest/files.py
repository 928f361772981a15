"""The manifest's file rows: one per remote file ever synced, keyed by (container, path as
raw bytes), with the purges announced before they are made and the files from the future
the last listing saw."""

from __future__ import annotations

from collections.abc import Iterable

from forge_syncd.library.manifest.outbox import Outbox
from forge_syncd.library.manifest.rows import (
    FILE_COLUMNS,
    Event,
    FileRecord,
    FileState,
    Handle,
    SyncedFile,
    VersionMove,
    db_mtime,
    py_mtime,
    utc_now,
)
from forge_syncd.library.manifest.versions import VersionRows


class FileRows:
    """The `files`, `purge_intents` and `future_files` tables."""

    def __init__(self, manifest: Handle, outbox: Outbox, versions: VersionRows) -> None:
        self._manifest = manifest
        self._outbox = outbox
        self._versions = versions
        self._writes: dict[str, int] = {}

    def version(self, container: str) -> tuple[int, int]:
        """Return a value that changes whenever `container`'s file rows may have changed:
        written through this handle (counted) or by another process (SQLite's
        data_version, which moves on any other connection's commit)."""
        with self._manifest.reading() as db:
            outside = int(db.execute("PRAGMA data_version").fetchone()[0])
            return outside, self._writes.get(container, 0)

    def _count_write(self, container: str) -> None:
        self._writes[container] = self._writes.get(container, 0) + 1

    def records(self, container: str) -> dict[bytes, FileRecord]:
        """Return every file row of `container`, keyed by path."""
        with self._manifest.reading() as db:
            rows = db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE container = ?",  # noqa: S608
                (container,),
            ).fetchall()
        return {bytes(r[0]): FileRecord.from_row(r) for r in rows}

    def synced_sizes(self, container: str) -> list[tuple[bytes, int]]:
        """Return (path, size) of every synced file row of `container` (what checking the
        library copies needs: a third of the cost of `records`)."""
        with self._manifest.reading() as db:
            rows = db.execute(
                "SELECT path, size FROM files WHERE container = ? AND state = ?",
                (container, FileState.SYNCED.value),
            ).fetchall()
        return [(bytes(path), size) for path, size in rows]

    def records_at(self, container: str, paths: Iterable[bytes]) -> dict[bytes, FileRecord]:
        """Return the file rows of `container` at `paths` (those that have one)."""
        found = {}
        with self._manifest.reading() as db:
            for path in paths:
                row = db.execute(
                    f"SELECT {FILE_COLUMNS} FROM files"  # noqa: S608
                    " WHERE container = ? AND path = ?",
                    (container, path),
                ).fetchone()
                if row is not None:
                    found[path] = FileRecord.from_row(row)
        return found

    def record_synced(
        self,
        container: str,
        files: Iterable[SyncedFile],
        events: Iterable[Event] = (),
        versions: Iterable[VersionMove] = (),
    ) -> None:
        """Record files as synced, with their events, all in one transaction. `versions`
        are moves announced with `versions.record_pending` and since made: they are recorded
        as kept, and the row of each moved path that gets no file here is dropped (its
        library copy is now a version: the path must be fetched or adopted again)."""
        now = utc_now()
        files = list(files)
        versions = list(versions)
        arriving = {f.path for f in files}
        with self._manifest.transaction() as db:
            self._count_write(container)
            self._outbox.add(db, events)
            self._versions.keep(db, container, versions)
            db.executemany(
                "DELETE FROM files WHERE container = ? AND path = ?",
                [(container, v.path) for v in versions if v.path not in arriving],
            )
            db.executemany(
                "INSERT INTO files (container, path, size, mtime_ns, sha256, state, synced_at,"
                " recheck) VALUES (?, ?, ?, ?, ?, 'synced', ?, ?)"
                " ON CONFLICT (container, path) DO UPDATE SET size = excluded.size,"
                " mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, state = 'synced',"
                " synced_at = excluded.synced_at, purged_at = NULL, recheck = excluded.recheck",
                [
                    (container, f.path, f.size, db_mtime(f.mtime_ns), f.sha256, now, int(f.racy))
                    for f in files
                ],
            )

    def record_forgotten(self, container: str, paths: Iterable[bytes]) -> None:
        """Record synced files the user deleted from the library as `forgotten`: never
        fetched again while the remote file is unchanged, and purgeable."""
        with self._manifest.transaction() as db:
            self._count_write(container)
            db.executemany(
                "UPDATE files SET state = 'forgotten' WHERE container = ? AND path = ?"
                " AND state = 'synced'",
                [(container, path) for path in paths],
            )

    def mark_recheck(self, container: str, paths: Iterable[bytes]) -> None:
        """Mark synced rows whose bytes are in doubt (the remote file's sha256 differed from
        the library copy's at a purge): the next sync fetches them again, and the library
        copy moves into `.versions/` if the new bytes differ."""
        with self._manifest.transaction() as db:
            self._count_write(container)
            db.executemany(
                "UPDATE files SET recheck = 1 WHERE container = ? AND path = ?",
                [(container, path) for path in paths],
            )

    def record_purged(
        self,
        container: str,
        paths: Iterable[bytes],
        events: Iterable[Event] = (),
        settled: Iterable[bytes] = (),
    ) -> None:
        """Record remote files as purged (deleted from the container), with their events,
        in one transaction; their purge intents, and those of `settled`, are dropped."""
        now = utc_now()
        paths = list(paths)
        with self._manifest.transaction() as db:
            self._count_write(container)
            self._outbox.add(db, events)
            db.executemany(
                "UPDATE files SET state = 'purged', purged_at = ? WHERE container = ? AND path = ?",
                [(now, container, path) for path in paths],
            )
            db.executemany(
                "DELETE FROM purge_intents WHERE container = ? AND path = ?",
                [(container, path) for path in [*paths, *settled]],
            )

    def record_purge_intents(self, container: str, files: Iterable[tuple[bytes, int, int]]) -> None:
        """Record, before deleting them remotely, the (path, size, mtime_ns) of files about
        to be purged; `record_purged` drops them again once the outcome is recorded."""
        with self._manifest.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO purge_intents (container, path, size, mtime_ns)"
                " VALUES (?, ?, ?, ?)",
                [(container, path, size, db_mtime(mtime)) for path, size, mtime in files],
            )

    def purge_intents(self, container: str) -> dict[bytes, tuple[int, int]]:
        """Return {path: (size, mtime_ns)} of the purges announced but never recorded (a
        crash came between the remote delete and its record)."""
        return self._sizes("purge_intents", container)

    def future(self, container: str) -> dict[bytes, tuple[int, int]]:
        """Return {path: (size, mtime_ns)} of the files from the future the last look saw."""
        return self._sizes("future_files", container)

    def _sizes(self, table: str, container: str) -> dict[bytes, tuple[int, int]]:
        """Return {path: (size, mtime_ns)} of `container`'s rows in `table` (a constant)."""
        with self._manifest.reading() as db:
            rows = db.execute(
                f"SELECT path, size, mtime_ns FROM {table} WHERE container = ?",  # noqa: S608
                (container,),
            ).fetchall()
        return {bytes(r[0]): (int(r[1]), py_mtime(r[2])) for r in rows}

    def set_future(self, container: str, files: dict[bytes, tuple[int, int]]) -> None:
        """Replace the files from the future remembered for `container`."""
        with self._manifest.transaction() as db:
            db.execute("DELETE FROM future_files WHERE container = ?", (container,))
            db.executemany(
                "INSERT INTO future_files (container, path, size, mtime_ns) VALUES (?, ?, ?, ?)",
                [(container, path, size, db_mtime(mtime)) for path, (size, mtime) in files.items()],
            )
