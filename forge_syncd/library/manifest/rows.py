"""The manifest's rows as Python sees them, and how its values are stored."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

# What starts a run, as `runs.trigger` records it: the schedule (and the first sync after
# start), an operator's `sync`/`cleanup`, live mode (a watcher's report, or the full run it
# queues), a `drain`, the first sync after `forge-syncctl add`, `forge-syncd --once`.
TRIGGERS = ("scheduled", "manual", "live", "drain", "add", "once")
Event = dict[str, Any]

INT64 = range(-(2**63), 2**63)


class Handle(Protocol):
    """What a table needs of the manifest (`db.Manifest`): its connection, under its lock,
    to read with or inside one transaction."""

    def reading(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


class FileState(StrEnum):
    """`files.state`: copied into the library, since deleted from the container, or deleted
    from the library by the user (`on_local_delete: forget`)."""

    SYNCED = "synced"
    PURGED = "purged"
    FORGOTTEN = "forgotten"


class VersionState(StrEnum):
    """`versions.state`: a move announced but not yet known made, made, or its file
    deleted under `keep_versions`."""

    PENDING = "pending"
    KEPT = "kept"
    PRUNED = "pruned"


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
        state = FileState(row[4])
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


VERSION_COLUMNS = "path, version_path, size, mtime_ns, sha256, versioned_at"


def version_move(row: tuple[Any, ...]) -> VersionMove:
    """Given a row selected as VERSION_COLUMNS, return its VersionMove."""
    return VersionMove(bytes(row[0]), bytes(row[1]), row[2], py_mtime(row[3]), row[4], row[5])


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
