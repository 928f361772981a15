"""A container's last runs, as status and the metrics show them: SPEC's `last_sync`,
`last_cleanup` and `last_copy`, and when each job last ran and last succeeded. A runner
hands `RunResults` each outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunSummary:
    """SPEC's `last_sync` / `last_cleanup` object."""

    started_at: str
    finished_at: str
    result: RunResult
    files: int
    bytes: int
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def last_copy_of(manifest: Manifest, name: str) -> dict[str, Any] | None:
    """Return status's `last_copy` as the manifest records it (across restarts), or None."""
    run = manifest.runs.last_copy(name)
    if run is None:
        return None
    return {
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "result": run.result,
        "files": run.files,
        "bytes": run.bytes,
        "error": run.error,
        "trigger": run.trigger,
        "run_id": run.run_id,
    }


@dataclass
class RunResults:
    """A container's last runs: `last` (by job), `last_copy` (the latest sync that copied
    files: the live mode's no-op reconciling runs come after it and say nothing of what
    landed), and when each job last ran and last succeeded (Unix seconds)."""

    last_copy: dict[str, Any] | None = None
    last: dict[Job, RunSummary] = field(default_factory=dict)
    last_run_ts: dict[Job, float] = field(default_factory=dict)
    last_success_ts: dict[Job, float] = field(default_factory=dict)

    def copy(self) -> RunResults:
        """Return a copy (a runner that replaces another carries its results over)."""
        return RunResults(
            self.last_copy, dict(self.last), dict(self.last_run_ts), dict(self.last_success_ts)
        )

    def record(self, job: Job, started: datetime, outcome: RunOutcome) -> None:
        """Take the outcome of `job`, started at `started`, that just ended."""
        summary = RunSummary(
            iso_utc(started),
            iso_utc(datetime.now(UTC)),
            outcome.result,
            outcome.files,
            outcome.bytes,
            outcome.error,
        )
        self.last[job] = summary
        if job == Job.SYNC and outcome.files:
            self.last_copy = {
                **summary.as_dict(),
                "trigger": outcome.trigger,
                "run_id": outcome.run_id,
            }
        self.last_run_ts[job] = time.time()
        if outcome.result == RunResult.SUCCESS:
            self.last_success_ts[job] = time.time()
