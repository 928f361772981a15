"""One job (sync or cleanup) of one container: what it works with, and how it is run.

`JobContext` is everything a run of one container works with; `run_job` runs one job under
the container's lock and turns every failure into a recorded, logged, classified outcome,
so neither `--once` nor the scheduler ever sees a traceback from a container's trouble.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import ErrorKind
from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.outcome import CleanupReport, SyncReport
from forge_syncd.jobs.progress import Progress
from forge_syncd.library.events import run_complete
from forge_syncd.library.manifest import Manifest
from forge_syncd.logs import get_logger
from forge_syncd.remote.errors import (
    AuthError,
    ConnectError,
    EndpointError,
    HostKeyError,
    RemoteError,
)
from forge_syncd.remote.transport import Transport


class RunFailed(Exception):
    """A run stopped for a local reason; `kind` labels it like RemoteError.kind."""

    kind = ErrorKind.LOCAL


class Busy(RunFailed):
    kind = ErrorKind.BUSY


@dataclass(frozen=True)
class JobContext:
    """What one run of one container works with (built by its runner, or by `--once`)."""

    container: ContainerConfig
    media_root: bytes
    manifest: Manifest
    remote: Transport
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def container_dir(self) -> bytes:
        """The container's folder in the library: `<media_root>/<name>`."""
        return os.path.join(self.media_root, self.container.name.encode())


@dataclass
class RunOutcome:
    files: int = 0
    bytes: int = 0
    failed_files: int = 0
    cancelled: bool = False
    error: str | None = None
    error_kinds: set[ErrorKind] = field(default_factory=set)
    versions: int = 0  # earlier library files moved into .versions/
    remote_files: int = 0
    remote_bytes: int = 0
    result: RunResult = RunResult.SUCCESS
    run_id: str = ""
    duration_s: float = 0.0
    trigger: str | None = None  # what started it (manifest.TRIGGERS)
    sync: SyncReport | None = None  # a sync's report, once it has its listing
    cleanup: CleanupReport | None = None  # a cleanup's, once it has decided


def outcome_dict(name: str, job: Job, outcome: RunOutcome | None) -> dict[str, Any]:
    """Given a finished run, return its entry of `runs` in a `sync`/`cleanup` result with
    `wait`: SPEC's history fields, `duration_s`, `trigger`; a sync's `not_copied` (what it
    left on the container and why: `[{"reason", "files", "bytes"}]`, reasons `settling`,
    `too_large`, `mtime_in_future`, `refused`, `deferred`); a cleanup's `dry_run`,
    `decisions`, `kept` (`[{"reason", "files", "bytes"}]`) and `older_than_s`."""
    if outcome is None:
        return {
            "container": name,
            "job": job,
            "result": RunResult.CANCELLED,
            "files": 0,
            "bytes": 0,
            "error": "container removed",
        }
    result = {
        "container": name,
        "job": job,
        "run_id": outcome.run_id,
        "result": outcome.result,
        "files": outcome.files,
        "bytes": outcome.bytes,
        "error": outcome.error,
        "duration_s": outcome.duration_s,
        "trigger": outcome.trigger,
    }
    if job == Job.SYNC:
        not_copied = outcome.sync.not_copied if outcome.sync is not None else {}
        result["not_copied"] = [
            {"reason": reason, "files": files, "bytes": nbytes}
            for reason, (files, nbytes) in sorted(not_copied.items())
        ]
    report = outcome.cleanup
    if report is not None:
        result["dry_run"] = report.dry_run
        result["decisions"] = report.decisions
        result["kept"] = report.kept
        result["older_than_s"] = report.older_than_s
    return result


def decide_result(outcome: RunOutcome) -> RunResult:
    """Return `failure` if anything failed, else `cancelled` if cancelled, else `success`."""
    if outcome.error is not None or outcome.failed_files:
        return RunResult.FAILURE
    return RunResult.CANCELLED if outcome.cancelled else RunResult.SUCCESS


@contextmanager
def container_lock(state_dir: Path, container: str) -> Iterator[None]:
    """Hold an exclusive lock on one container (across processes); raise Busy if taken."""
    folder = state_dir / "locks"
    folder.mkdir(mode=0o750, exist_ok=True)
    fd = os.open(folder / f"{container}.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Busy(f"another run of {container} is in progress") from exc
        yield
    finally:
        os.close(fd)


def _log_remote_failure(log: Any, exc: RemoteError) -> None:
    if isinstance(exc, HostKeyError):
        log.error("host_key_rejected", error=str(exc), kind=exc.kind)
    elif isinstance(exc, ConnectError | AuthError | EndpointError):
        log.error("ssh_connect_failed", error=str(exc), kind=exc.kind)


def run_job(
    job: Job,
    container: str,
    manifest: Manifest,
    body: Callable[[Any, str], RunOutcome],
    trigger: str | None = None,
    dry_run: bool = False,
) -> RunOutcome:
    """Run `body(log, run_id)` as one recorded run of `job` on `container`, started by
    `trigger` (manifest.TRIGGERS); return its outcome. The run's summary event is recorded
    with the run's end."""
    run = manifest.runs.start(container, job, trigger, dry_run)
    log = get_logger(container=container, run_id=run.run_id)
    log.info(f"{job}_started")
    started = time.monotonic()
    try:
        with container_lock(manifest.path.parent, container):
            outcome = body(log, run.run_id)
    except RemoteError as exc:
        _log_remote_failure(log, exc)
        outcome = RunOutcome(error=str(exc), error_kinds={exc.kind})
    except RunFailed as exc:
        outcome = RunOutcome(error=str(exc), error_kinds={exc.kind})
    except OSError as exc:
        outcome = RunOutcome(error=f"local error: {exc}", error_kinds={ErrorKind.LOCAL})
    except Exception as exc:
        # A defect, or hostile input a check missed: this run fails (recorded, counted,
        # backed off, cleanup held) and the daemon goes on. The traceback is at debug.
        log.debug("internal_error", error=str(exc), exception=traceback.format_exc())
        outcome = RunOutcome(
            error=f"internal error: {type(exc).__name__}: {exc}"[:500],
            error_kinds={ErrorKind.INTERNAL},
        )
    outcome.result = decide_result(outcome)
    outcome.run_id = run.run_id
    outcome.trigger = trigger
    outcome.duration_s = round(time.monotonic() - started, 3)
    summary = run_complete(
        job,
        container,
        run.run_id,
        outcome.result,
        outcome.files,
        outcome.bytes,
        outcome.duration_s,
        outcome.error,
    )
    manifest.runs.finish(
        run.run_id, outcome.result, outcome.files, outcome.bytes, outcome.error, [summary]
    )
    fields = {"files": outcome.files, "bytes": outcome.bytes, "duration_s": outcome.duration_s}
    if outcome.result == RunResult.FAILURE:
        # One JSON type a field: several kinds are one string, sorted, joined by ",".
        kinds = ",".join(sorted(outcome.error_kinds))
        log.error(f"{job}_failed", error=outcome.error, kind=kinds, **fields)
    else:
        log.info(f"{job}_finished", result=outcome.result, **fields)
    return outcome
