"""One container's life inside the daemon: its connection, its state, its last runs.

A `ContainerRunner` runs that container's sync and cleanup jobs one at a time (they exclude
each other), keeps its SSH connection open between runs, tracks consecutive failures for
backoff, and exposes what `status`, `STATUS=` and metrics show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from forge_syncd.cleanup import cleanup_container
from forge_syncd.cleanup.drain import DrainReport, drain_container
from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import CONNECTION, UNREACHABLE, ErrorKind
from forge_syncd.jobs.kinds import ContainerState, Job, RunResult, WatchState
from forge_syncd.jobs.outcome import SyncReport
from forge_syncd.jobs.progress import Progress
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.live.watch import LiveWatch
from forge_syncd.remote.transport import Transport
from forge_syncd.remote.types import RemoteFile
from forge_syncd.service import memory
from forge_syncd.service.atrisk import RemoteOnly
from forge_syncd.service.results import RunResults, last_copy_of
from forge_syncd.sync import SyncState, sync_container
from forge_syncd.transports.factory import open_transport

BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 3600.0


def backoff_s(failures: int) -> float:
    """Given consecutive failures (>= 1), return how long to wait before the next try."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1)))


@contextmanager
def turn(runner: ContainerRunner, job: Job) -> Iterator[datetime | None]:
    """The container's turn for `job`, after any running job of it (its job lock): yield
    the start time, or None when the container was retired meanwhile. The caller records
    the run inside the `with`: the next job (a cleanup asking whether the last sync failed)
    sees it recorded."""
    with runner.job_lock:
        if runner.retired:
            yield None
            return
        runner.cancel.clear()
        runner.running = job
        try:
            yield datetime.now(UTC)
        finally:
            runner.running = None
            memory.trim()  # what a big run needed goes back to the system


class ContainerRunner:
    """Runs one container's jobs; thread-safe; one job at a time."""

    def __init__(
        self,
        config: ContainerConfig,
        media_root: bytes,
        manifest: Manifest,
        on_finished: Callable[[ContainerRunner, Job, RunOutcome], None] | None = None,
        predecessor: ContainerRunner | None = None,
        remote: Transport | None = None,
    ) -> None:
        """`predecessor` is the runner this one replaces (a reload changed the container):
        its job lock is shared, so the new runner's first job waits for the old one's to
        end, and its totals and last results carry over. `remote`: how the container is
        reached (default: `transports.factory.open_transport`; the unit tests pass a fake)."""
        self.config = config
        self.media_root = media_root
        self.manifest = manifest
        self.remote: Transport = remote or open_transport(config)
        self.sync_state = SyncState()  # what this container's sync runs remember
        self.cancel = threading.Event()
        self.on_finished = on_finished
        self.paused = False
        self.retired = False
        self.failures = 0
        self.running: Job | None = None
        self.last_error_kinds: frozenset[ErrorKind] = frozenset()
        self.reachable: bool | None = None  # None until a first connection attempt
        self.remote_seen: tuple[int, int] | None = None  # (files, bytes) of the last listing
        self.pending_after: tuple[int, int] = (0, 0)  # still to transfer after the last sync
        self.job_lock: threading.Lock = predecessor.job_lock if predecessor else threading.Lock()
        self.progress: Progress = predecessor.progress if predecessor else Progress()
        self.results: RunResults = (
            predecessor.results.copy()
            if predecessor
            else RunResults(last_copy_of(manifest, config.name))
        )
        self.live: LiveWatch | None = None
        self.remote_only: RemoteOnly = RemoteOnly(
            predecessor.remote_only.files if predecessor else None
        )
        # What the next scheduled sync counts as started by (`add`: the first sync after
        # `forge-syncctl add`); None: `scheduled`.
        self.first_trigger: str | None = None

    def start_watch(self, queue_full_run: Callable[[], None]) -> None:
        """Start live mode (when the container's `sync.watch` is on): a remote watcher
        whose reports become syncs of the changed files, this runner its `LiveHost`.
        `queue_full_run()` queues a full run."""
        if not self.config.sync.watch or self.live is not None or self.retired:
            return
        self._queue_full_run = queue_full_run
        self.live = LiveWatch(self.config, self.remote, self)
        self.live.start()

    def sync_changed(self, files: list[RemoteFile] | None) -> bool:
        """`LiveHost`: sync `files` (None: all); False once this runner is retired."""
        return self.run(Job.SYNC, changed=files, trigger="live") is not None

    def queue_full_run(self) -> None:
        """`LiveHost`: queue a full run (a watcher was established)."""
        self._queue_full_run()

    @property
    def watch_state(self) -> WatchState:
        """SPEC's `watch`: `watching` (live), `polling` (live mode on, its watcher not
        running: the schedule syncs), `off`."""
        return WatchState.OFF if self.live is None else self.live.state

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> ContainerState:
        """One of SPEC's states: idle, syncing, cleaning, paused, unreachable, error."""
        if self.running == Job.SYNC:
            return ContainerState.SYNCING
        if self.running == Job.CLEANUP:
            return ContainerState.CLEANING
        if self.paused:
            return ContainerState.PAUSED
        if self.last_error_kinds & UNREACHABLE:
            return ContainerState.UNREACHABLE
        if self.last_error_kinds:
            return ContainerState.ERROR
        return ContainerState.IDLE

    def run(
        self,
        job: Job,
        dry_run: bool | None = None,
        changed: list[RemoteFile] | None = None,
        trigger: str | None = None,
    ) -> RunOutcome | None:
        """Run `job` ("sync" or "cleanup") now, after any running job of this container.
        `changed`: a sync of only these files, reported complete by the live watcher;
        `trigger`: what started it (manifest.TRIGGERS; None: the schedule, or `first_trigger`
        for the first sync).

        Return its outcome, or None when the container was retired meanwhile. A cleanup is
        not run while the last sync failed (SPEC: nothing is purged while sync is failing).
        """
        with turn(self, job) as started:
            if started is None:
                return None
            if trigger is None and job == Job.SYNC and self.first_trigger is not None:
                trigger, self.first_trigger = self.first_trigger, None
            outcome = self._run(job, dry_run, changed, trigger or "scheduled")
            self._record(job, started, outcome)
        if self.on_finished is not None:
            self.on_finished(self, job, outcome)
        return outcome

    def drain(self, purge: bool) -> DrainReport | None:
        """Before the box is destroyed: a final sync, every remote file verified by sha256 on
        both ends, and with `purge` the verified ones deleted (`cleanup/drain.py`); after any
        running job of this container. Return the report, or None when the container was
        retired."""
        with turn(self, Job.SYNC) as started:
            if started is None:
                return None
            self.sync_state.keep_fetch_ready = False
            report = drain_container(self._context(), self.sync_state, purge)
            runs = [(Job.SYNC, report.sync), (Job.CLEANUP, report.purge)]
            for job, outcome in runs:
                if outcome is not None:
                    self._record(job, started, outcome)
        for job, outcome in runs:
            if outcome is not None and self.on_finished is not None:
                self.on_finished(self, job, outcome)
        return report

    def _context(self) -> JobContext:
        return JobContext(
            self.config, self.media_root, self.manifest, self.remote, self.progress, self.cancel
        )

    def _run(
        self, job: Job, dry_run: bool | None, changed: list[RemoteFile] | None, trigger: str
    ) -> RunOutcome:
        ctx = self._context()
        if job == Job.SYNC:
            self.sync_state.keep_fetch_ready = self.watch_state == WatchState.WATCHING
            return sync_container(ctx, self.sync_state, changed, trigger)
        return cleanup_container(ctx, dry_run, trigger=trigger)

    def _record(self, job: Job, started: datetime, outcome: RunOutcome) -> None:
        self.results.record(job, started, outcome)
        if ErrorKind.SYNC_FAILING in outcome.error_kinds:
            return  # a skipped cleanup says nothing new about the container
        self.reachable = not outcome.error_kinds & CONNECTION
        if job == Job.SYNC and self.reachable and outcome.remote_files:
            self.remote_seen = (outcome.remote_files, outcome.remote_bytes)
        report = outcome.sync
        if report is not None:
            self._note_sync(report)
        if job == Job.SYNC and report is not None and report.planned is not None:  # a full run
            planned_files, planned_bytes = report.planned
            self.pending_after = (
                max(0, planned_files - outcome.files),
                max(0, planned_bytes - outcome.bytes),
            )
        if outcome.result == RunResult.FAILURE:
            self.failures += 1
            self.last_error_kinds = frozenset(outcome.error_kinds)
            # A connection that failed a run (stalled, half-dead) is not reused: the next
            # run connects afresh.
            self.remote.close()
        elif outcome.result == RunResult.SUCCESS:
            self.failures = 0
            self.last_error_kinds = frozenset()

    def _note_sync(self, report: SyncReport) -> None:
        """Take what a sync reports: the media it left at risk, the container's clock, the
        files live mode must sync once they settle."""
        if self.live is not None and report.settling:
            self.live.settling(report.settling)
        self.remote_only.note(report)

    def retune(self, config: ContainerConfig) -> None:
        """Take `config`, which changes only the bandwidth limit: the running job goes on
        (its limiter, `limits/`, is updated by the reload), and the transport's next
        transfer reads the new values."""
        self.config = config
        setattr(self.remote, "container", config)  # noqa: B010 - each transport keeps it

    def retire(self) -> None:
        """Stop this runner for good (container removed, or shutdown): cancel, stop live
        mode."""
        self.retired = True
        self.cancel.set()
        if self.live is not None:
            self.live.stop()

    def close(self) -> None:
        self.remote.close()
