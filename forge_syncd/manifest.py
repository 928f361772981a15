"""The manifest: what was synced, as SQLite in `state_dir/manifest.sqlite`.

One row per remote file ever synced, keyed by (container, path as raw bytes), with the remote
(size, mtime) it had when copied, its sha256 when known and whether it was since purged; and
one row per run. WAL mode; every change is one transaction, so a crash leaves the previous
consistent state. `PRAGMA user_version` holds the schema version; `MIGRATIONS[i]` upgrades
from version i to i+1.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE files (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('synced', 'purged')),
        synced_at TEXT NOT NULL,
        purged_at TEXT,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        container TEXT NOT NULL,
        job TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        result TEXT,
        files INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_start ON runs (started_at);
    """,
    # 2: the event outbox, written in the same transaction as what it reports, and one
    # delivery cursor per sink.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        container TEXT,
        body TEXT NOT NULL
    );
    CREATE TABLE sink_cursors (
        sink TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    );
    """,
    # 3: remote deletions announced before they are made, so that a crash between a remote
    # delete and its record is reconciled by the next cleanup (no file_purged event lost).
    """
    CREATE TABLE purge_intents (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    """,
    # 4: earlier versions of library files (versions.py), `forgotten` files (deleted from
    # the library by the user under `on_local_delete: forget`), and the files from the
    # future the last listing saw (ready once two looks agree, also across `--once` runs).
    # SQLite cannot change a CHECK constraint in place: the files table is rebuilt.
    """
    CREATE TABLE files_v4 (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('synced', 'purged', 'forgotten')),
        synced_at TEXT NOT NULL,
        purged_at TEXT,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    INSERT INTO files_v4 SELECT container, path, size, mtime_ns, sha256, state, synced_at,
        purged_at FROM files;
    DROP TABLE files;
    ALTER TABLE files_v4 RENAME TO files;
    CREATE TABLE versions (
        container TEXT NOT NULL,
        version_path BLOB NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        versioned_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'kept', 'pruned')),
        pruned_at TEXT,
        PRIMARY KEY (container, version_path)
    ) WITHOUT ROWID;
    CREATE INDEX versions_by_state ON versions (container, state, versioned_at);
    CREATE TABLE future_files (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    """,
    # 5: `recheck`: a synced row whose size and mtime do not prove its bytes (read within a
    # clock tick of its mtime, or found different from the remote's at a purge): the next
    # look fetches the file again instead of taking it as unchanged. Also from 5, an mtime
    # outside SQLite's 64-bit integers (before 1677, after 2262) is stored as a decimal BLOB
    # (`db_mtime`): older versions never wrote one.
    """
    ALTER TABLE files ADD COLUMN recheck INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: what started each run (`TRIGGERS`; NULL for runs recorded before 6) and whether it
    # was a dry run; an index for a container's runs by job, newest first (`history NAME`,
    # the last run that copied files).
    """
    ALTER TABLE runs ADD COLUMN trigger TEXT;
    ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_by_container ON runs (container, job, started_at);
    """,
)
# What starts a run, as `runs.trigger` records it: the schedule (and the first sync after
# start), an operator's `sync`/`cleanup`, live mode (a watcher's report, or the full run it
# queues), a `drain`, the first sync after `forge-syncctl add`, `forge-syncd --once`.
TRIGGERS = ("scheduled", "manual", "live", "drain", "add", "once")
Event = dict[str, Any]
SCHEMA_VERSION = len(MIGRATIONS)


INT64 = range(-(2**63), 2**63)


def db_mtime(mtime_ns: int) -> int | bytes:
    """Return an mtime (ns, any Python int) as SQLite stores it: an INTEGER where it fits in
    64 bits, else its decimal digits as a BLOB (an INTEGER column would turn numeric text
    into a lossy REAL)."""
    return mtime_ns if mtime_ns in INT64 else str(mtime_ns).encode()


def py_mtime(value: int | bytes) -> int:
    """Return the mtime (ns) that `db_mtime` stored."""
    return value if isinstance(value, int) else int(bytes(value))


def utc_now() -> str:
    """Return the current time as ISO 8601 UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class FileState(StrEnum):
    """What became of a file the manifest records (`files.state`)."""

    SYNCED = "synced"  # a library copy holds its bytes
    PURGED = "purged"  # deleted from the container after it was synced
    FORGOTTEN = "forgotten"  # the user deleted the library copy (`on_local_delete: forget`)


_FILE_STATES = {state.value: state for state in FileState}  # a dict: rows are read in bulk


class VersionState(StrEnum):
    """Where an earlier version stands (`versions.state`)."""

    PENDING = "pending"  # its move was announced, not yet recorded done
    KEPT = "kept"  # in `.versions/`
    PRUNED = "pruned"  # deleted under `keep_versions`


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One file row. `recheck`: its (size, mtime) do not prove its bytes (see MIGRATIONS[4])."""

    path: bytes
    size: int
    mtime_ns: int
    sha256: str | None
    state: FileState
    recheck: bool = False

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> FileRecord:
        """Given (path, size, mtime_ns, sha256, state, recheck) as selected, return it."""
        state = _FILE_STATES[row[4]]
        return cls(bytes(row[0]), row[1], py_mtime(row[2]), row[3], state, bool(row[5]))


FILE_COLUMNS = "path, size, mtime_ns, sha256, state, recheck"


@dataclass(frozen=True, slots=True)
class SyncedFile:
    """What a finished transfer (or an adopted local copy) records. `racy`: its bytes were
    read so soon after its mtime that a rewrite could keep both size and mtime
    (`mtimes.settled_by`): recorded with `recheck` set."""

    path: bytes
    size: int
    mtime_ns: int
    sha256: str | None
    racy: bool = False


@dataclass(frozen=True, slots=True)
class VersionMove:
    """An earlier version of a library file, moved from `path` (relative to the container's
    root) to `version_path` (relative to the container's folder, under `.versions/`) at
    `versioned_at` (ISO 8601 UTC); size, mtime and sha256 (when known) of its bytes."""

    path: bytes
    version_path: bytes
    size: int
    mtime_ns: int
    sha256: str | None
    versioned_at: str


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs`. `trigger`: one of TRIGGERS (None for a run recorded before schema
    6); `dry_run`: a cleanup that deleted nothing by design."""

    run_id: str
    container: str
    job: str
    started_at: str
    finished_at: str | None
    result: str | None
    files: int
    bytes: int
    error: str | None
    trigger: str | None = None
    dry_run: bool = False


RUN_COLUMNS = (
    "run_id, container, job, started_at, finished_at, result, files, bytes, error, trigger, dry_run"
)


def run_record(row: tuple[Any, ...]) -> RunRecord:
    """Given a row selected as RUN_COLUMNS, return its RunRecord."""
    run_id, container, job, started, finished, result, files, nbytes, error, trigger = row[:10]
    return RunRecord(
        run_id,
        container,
        job,
        started,
        finished,
        result,
        files,
        nbytes,
        error,
        trigger,
        bool(row[10]),
    )


class Manifest:
    """A handle on the manifest database, safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        self._new_events = False
        self._file_writes: dict[str, int] = {}
        self.on_events: Callable[[], None] | None = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    @classmethod
    def open(cls, state_dir: Path) -> Manifest:
        """Open (creating and migrating as needed) the manifest in `state_dir`."""
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        return cls(state_dir / "manifest.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this forge-syncd "
                    f"understands ({SCHEMA_VERSION}); upgrade forge-syncd"
                )
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def files_version(self, container: str) -> tuple[int, int]:
        """Return a value that changes whenever `container`'s file rows may have changed:
        written through this handle (counted) or by another process (SQLite's
        data_version, which moves on any other connection's commit)."""
        with self._lock:
            outside = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            return outside, self._file_writes.get(container, 0)

    def _count_write(self, container: str) -> None:
        self._file_writes[container] = self._file_writes.get(container, 0) + 1

    def records(self, container: str) -> dict[bytes, FileRecord]:
        """Return every file row of `container`, keyed by path."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE container = ?",  # noqa: S608
                (container,),
            ).fetchall()
        return {bytes(r[0]): FileRecord.from_row(r) for r in rows}

    def records_at(self, container: str, paths: Iterable[bytes]) -> dict[bytes, FileRecord]:
        """Return the file rows of `container` at `paths` (those that have one)."""
        found = {}
        with self._lock:
            for path in paths:
                row = self._db.execute(
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
        are moves announced with `record_versions_pending` and since made: they are recorded
        as kept, and the row of each moved path that gets no file here is dropped (its
        library copy is now a version: the path must be fetched or adopted again)."""
        now = utc_now()
        files = list(files)
        versions = list(versions)
        arriving = {f.path for f in files}
        with self.transaction() as db:
            self._count_write(container)
            self._add_events(db, events)
            db.executemany(
                "UPDATE versions SET state = 'kept' WHERE container = ? AND version_path = ?",
                [(container, v.version_path) for v in versions],
            )
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

    def record_versions_pending(self, container: str, moves: Iterable[VersionMove]) -> None:
        """Announce moves into `.versions/` before they are made (see versions.py)."""
        with self.transaction() as db:
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

    def _versions(
        self, container: str, state: VersionState, before: str | None = None
    ) -> list[VersionMove]:
        """Return the version rows of `container` in `state`, oldest first; with `before`,
        only those versioned at or before it."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, version_path, size, mtime_ns, sha256, versioned_at FROM versions"
                " WHERE container = ? AND state = ? AND versioned_at <= coalesce(?, versioned_at)"
                " ORDER BY versioned_at, version_path",
                (container, state, before),
            ).fetchall()
        return [
            VersionMove(bytes(r[0]), bytes(r[1]), r[2], py_mtime(r[3]), r[4], r[5]) for r in rows
        ]

    def pending_versions(self, container: str) -> list[VersionMove]:
        """Return the moves announced but never recorded as kept (a crash came between)."""
        return self._versions(container, VersionState.PENDING)

    def kept_versions(self, container: str, before: str | None = None) -> list[VersionMove]:
        """Return the versions kept, oldest first; with `before` (ISO 8601 UTC), only those
        versioned at or before it."""
        return self._versions(container, VersionState.KEPT, before)

    def drop_pending_versions(self, container: str, moves: Iterable[VersionMove]) -> None:
        """Forget announced moves that were never made."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM versions WHERE container = ? AND version_path = ?"
                " AND state = 'pending'",
                [(container, m.version_path) for m in moves],
            )

    def record_versions_pruned(
        self, container: str, moves: Iterable[VersionMove], events: Iterable[Event] = ()
    ) -> None:
        """Record versions as pruned (their files deleted under `keep_versions`), with their
        events, in one transaction."""
        now = utc_now()
        with self.transaction() as db:
            self._add_events(db, events)
            db.executemany(
                "UPDATE versions SET state = 'pruned', pruned_at = ?"
                " WHERE container = ? AND version_path = ?",
                [(now, container, m.version_path) for m in moves],
            )

    def record_events(self, events: Iterable[Event]) -> None:
        """Put events that record nothing else (a drain's verdict, media at risk) in the
        outbox, durably, in one transaction."""
        with self.transaction() as db:
            self._add_events(db, events)

    def record_forgotten(self, container: str, paths: Iterable[bytes]) -> None:
        """Record synced files the user deleted from the library as `forgotten`: never
        fetched again while the remote file is unchanged, and purgeable."""
        with self.transaction() as db:
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
        with self.transaction() as db:
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
        with self.transaction() as db:
            self._count_write(container)
            self._add_events(db, events)
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
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO purge_intents (container, path, size, mtime_ns)"
                " VALUES (?, ?, ?, ?)",
                [(container, path, size, db_mtime(mtime)) for path, size, mtime in files],
            )

    def purge_intents(self, container: str) -> dict[bytes, tuple[int, int]]:
        """Return {path: (size, mtime_ns)} of the purges announced but never recorded (a
        crash came between the remote delete and its record)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns FROM purge_intents WHERE container = ?",
                (container,),
            ).fetchall()
        return {bytes(r[0]): (int(r[1]), py_mtime(r[2])) for r in rows}

    def newest_run_start(self, container: str) -> str | None:
        """Return the latest `started_at` of the container's runs (ISO 8601 UTC), None
        before its first: the newest time the manifest holds for it, which its versions'
        stamps are checked against (see versions.py). Read from the `runs_by_start` index,
        newest first, so it stops at the container's latest run (a running one, when a run
        asks)."""
        with self._lock:
            row = self._db.execute(
                "SELECT started_at FROM runs INDEXED BY runs_by_start WHERE container = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (container,),
            ).fetchone()
        return None if row is None else str(row[0])

    def start_run(
        self, container: str, job: str, trigger: str | None = None, dry_run: bool = False
    ) -> RunRecord:
        """Record that a run began (started by `trigger`, one of TRIGGERS); return it with a
        new run id."""
        run = RunRecord(
            uuid.uuid4().hex[:16],
            container,
            job,
            utc_now(),
            None,
            None,
            0,
            0,
            None,
            trigger,
            dry_run,
        )
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, container, job, started_at, trigger, dry_run)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, container, job, run.started_at, trigger, int(dry_run)),
            )
        return run

    def finish_run(
        self,
        run_id: str,
        result: str,
        files: int,
        nbytes: int,
        error: str | None,
        events: Iterable[Event] = (),
    ) -> None:
        with self.transaction() as db:
            self._add_events(db, events)
            db.execute(
                "UPDATE runs SET finished_at = ?, result = ?, files = ?, bytes = ?, error = ?"
                " WHERE run_id = ?",
                (utc_now(), result, files, nbytes, error, run_id),
            )

    # -- the event outbox --------------------------------------------------------------
    def _add_events(self, db: sqlite3.Connection, events: Iterable[Event]) -> None:
        rows = [(e["type"], e.get("container"), json.dumps(e)) for e in events]
        if rows:
            db.executemany("INSERT INTO events (type, container, body) VALUES (?, ?, ?)", rows)
            self._new_events = True

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); after
        a commit that added events, call `on_events` (the dispatcher's wake-up)."""
        with self._lock:
            self._new_events = False
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            notify = self._new_events and self.on_events is not None
        if notify and self.on_events is not None:
            self.on_events()

    def events_after(self, last_id: int, limit: int = 100) -> list[Event]:
        """Return up to `limit` events with an id above `last_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM events WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [{"id": row[0], **json.loads(row[1])} for row in rows]

    def sink_cursor(self, sink: str) -> int:
        """Return the id of the last event delivered to `sink` (0: none yet)."""
        with self._lock:
            row = self._db.execute(
                "SELECT last_id FROM sink_cursors WHERE sink = ?", (sink,)
            ).fetchone()
        return int(row[0]) if row else 0

    def set_sink_cursor(self, sink: str, last_id: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sink_cursors (sink, last_id) VALUES (?, ?)"
                " ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
                (sink, last_id),
            )

    def events_pending(self, sink: str) -> int:
        """Return how many events `sink` has not had yet."""
        cursor = self.sink_cursor(sink)
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM events WHERE id > ?", (cursor,))
            return int(row.fetchone()[0])

    def future_files(self, container: str) -> dict[bytes, tuple[int, int]]:
        """Return {path: (size, mtime_ns)} of the files from the future the last look saw."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, size, mtime_ns FROM future_files WHERE container = ?",
                (container,),
            ).fetchall()
        return {bytes(r[0]): (int(r[1]), py_mtime(r[2])) for r in rows}

    def set_future_files(self, container: str, files: dict[bytes, tuple[int, int]]) -> None:
        """Replace the files from the future remembered for `container`."""
        with self.transaction() as db:
            db.execute("DELETE FROM future_files WHERE container = ?", (container,))
            db.executemany(
                "INSERT INTO future_files (container, path, size, mtime_ns) VALUES (?, ?, ?, ?)",
                [(container, path, size, db_mtime(mtime)) for path, (size, mtime) in files.items()],
            )

    def last_result(self, container: str, job: str) -> str | None:
        """Return the result of `container`'s last finished run of `job` (None: none yet),
        as recorded: it holds across restarts."""
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM runs WHERE container = ? AND job = ? AND result IS NOT NULL"
                " ORDER BY started_at DESC LIMIT 1",
                (container, job),
            ).fetchone()
        return None if row is None else str(row[0])

    def runs(self, container: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Return past runs, newest first."""
        query = f"SELECT {RUN_COLUMNS} FROM runs"  # noqa: S608 - a constant
        args: tuple[object, ...] = ()
        if container is not None:
            query += " WHERE container = ?"
            args = (container,)
        with self._lock:
            rows = self._db.execute(
                query + " ORDER BY started_at DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [run_record(row) for row in rows]

    def run_containers(self) -> set[str]:
        """Return the name of every container that has a recorded run."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT container FROM runs").fetchall()
        return {str(row[0]) for row in rows}

    def last_copy(self, container: str) -> RunRecord | None:
        """Return `container`'s latest finished sync that copied files (None: none yet)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_by_container"  # noqa: S608
                " WHERE container = ? AND job = 'sync' AND files > 0"
                " AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                (container,),
            ).fetchone()
        return None if row is None else run_record(row)
