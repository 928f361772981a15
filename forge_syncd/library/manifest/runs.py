"""The manifest's `runs` table: one row per sync or cleanup, started and finished."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from forge_syncd.library.manifest.outbox import Outbox
from forge_syncd.library.manifest.rows import (
    RUN_COLUMNS,
    Event,
    Handle,
    RunRecord,
    run_record,
    utc_now,
)


class RunRows:
    """The runs: started, finished (with the run's summary events), read back."""

    def __init__(self, manifest: Handle, outbox: Outbox) -> None:
        self._manifest = manifest
        self._outbox = outbox

    def newest_start(self, container: str) -> str | None:
        """Return the latest `started_at` of the container's runs (ISO 8601 UTC), None
        before its first: the newest time the manifest holds for it, which its versions'
        stamps are checked against (see versions.py). Read from the `runs_by_start` index,
        newest first, so it stops at the container's latest run (a running one, when a run
        asks)."""
        with self._manifest.reading() as db:
            row = db.execute(
                "SELECT started_at FROM runs INDEXED BY runs_by_start WHERE container = ?"
                " ORDER BY started_at DESC LIMIT 1",
                (container,),
            ).fetchone()
        return None if row is None else str(row[0])

    def start(
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
        with self._manifest.transaction() as db:
            db.execute(
                "INSERT INTO runs (run_id, container, job, started_at, trigger, dry_run)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, container, job, run.started_at, trigger, int(dry_run)),
            )
        return run

    def finish(
        self,
        run_id: str,
        result: str,
        files: int,
        nbytes: int,
        error: str | None,
        events: Iterable[Event] = (),
    ) -> None:
        """Record how a run ended, with its events, in one transaction."""
        with self._manifest.transaction() as db:
            self._outbox.add(db, events)
            db.execute(
                "UPDATE runs SET finished_at = ?, result = ?, files = ?, bytes = ?, error = ?"
                " WHERE run_id = ?",
                (utc_now(), result, files, nbytes, error, run_id),
            )

    def last_result(self, container: str, job: str) -> str | None:
        """Return the result of `container`'s last finished run of `job` (None: none yet),
        as recorded: it holds across restarts."""
        with self._manifest.reading() as db:
            row = db.execute(
                "SELECT result FROM runs WHERE container = ? AND job = ? AND result IS NOT NULL"
                " ORDER BY started_at DESC LIMIT 1",
                (container, job),
            ).fetchone()
        return None if row is None else str(row[0])

    def recent(self, container: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Return past runs, newest first."""
        query = f"SELECT {RUN_COLUMNS} FROM runs"  # noqa: S608 - a constant
        args: tuple[object, ...] = ()
        if container is not None:
            query += " WHERE container = ?"
            args = (container,)
        with self._manifest.reading() as db:
            rows = db.execute(
                query + " ORDER BY started_at DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [run_record(row) for row in rows]

    def containers(self) -> set[str]:
        """Return the name of every container that has a recorded run."""
        with self._manifest.reading() as db:
            rows = db.execute("SELECT DISTINCT container FROM runs").fetchall()
        return {str(row[0]) for row in rows}

    def last_copy(self, container: str) -> RunRecord | None:
        """Return `container`'s latest finished sync that copied files (None: none yet)."""
        with self._manifest.reading() as db:
            row = db.execute(
                f"SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_by_container"  # noqa: S608
                " WHERE container = ? AND job = 'sync' AND files > 0"
                " AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
                (container,),
            ).fetchone()
        return None if row is None else run_record(row)
