"""Live mode: a container's remote watcher turned into syncs of just the changed files.

One `LiveWatch` thread per container (with `sync.watch: true`) keeps the remote watcher
(`transports/shell/watch.py`) running on the kept-open connection. Its records are read
into `Changes` (`live/interpret.py`, `live/changes.py`, bounded); when a burst ends
(`live/burst.py`) its complete files are synced by one run without a listing, through the
container's `LiveHost` (its runner). The container's runs never overlap (the runner's job
lock): the scheduled `interval` stays as the full reconciliation.

Whenever a watcher is established (first start, restart, a fallback to another watcher)
one full run is queued, since changes made before its watches were in place were not seen.
A watcher that cannot start, ends, or sends more than its budget (`live/budget.py`) is
restarted after a growing delay; meanwhile the container is `polling` on its schedule.
Records that are no use (unparsable, refused, outside the synced `folders`) are counted and
logged as one summary a minute at most; a lost track of changes (an overflow, too many
pending names) makes a full run at most every FULL_RUN_GAP_S.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.kinds import WatchState
from forge_syncd.live.budget import ProblemTally, WatchBudget
from forge_syncd.live.burst import Burst
from forge_syncd.live.changes import MAX_PENDING, Changes
from forge_syncd.live.interpret import RecordInterpreter
from forge_syncd.logs import get_logger
from forge_syncd.mtimes import NS
from forge_syncd.patterns import Scope
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.transport import Transport, WatchFeed
from forge_syncd.remote.types import RemoteFile

IDLE_READ_S = 1.0
RESTART_DELAYS_S = (1.0, 5.0, 30.0, 120.0, 300.0)
STEADY_S = 60.0  # a watcher that ran this long resets the restart delay
BUDGET_STEADY_S = 3600.0  # the same, for a watcher that then went over its budget
FULL_RUN_GAP_S = 60.0  # a lost track of changes makes a full run at most this often
MAX_SETTLING_BATCHES = 16  # full runs' settling files held while no watcher reads them


class LiveHost(Protocol):
    """What live mode asks of the container it watches (its runner)."""

    @property
    def paused(self) -> bool:
        """Whether syncs are held."""
        ...

    def sync_changed(self, files: list[RemoteFile] | None) -> bool:
        """Run an incremental sync of `files` (None: a full run); False once the container
        is gone (its runner retired)."""
        ...

    def queue_full_run(self) -> None:
        """Queue a full run (a watcher was established: what changed before its watches
        were placed was not seen)."""
        ...


class OverBudget(Exception):
    """The watcher sent more than its budget: it counts as failed."""


class LiveWatch:
    """Keeps one container's remote watcher running and syncs what it reports."""

    def __init__(
        self,
        container: ContainerConfig,
        remote: Transport,
        host: LiveHost,
        on_state: Callable[[WatchState], None] | None = None,
    ) -> None:
        """`host`: what syncs, queues full runs and says whether syncs are held;
        `on_state(state)`: told `watching` or `polling` when that changes."""
        self.container = container
        self.remote = remote
        self.host = host
        self.on_state = on_state or (lambda state: None)
        self.state = WatchState.POLLING
        self.backend = ""
        self.restarts = 0
        self.log = get_logger(container=container.name)
        self._stop = threading.Event()
        self._feed: WatchFeed | None = None
        self._settling: queue.SimpleQueue[list[RemoteFile]] = queue.SimpleQueue()
        self._scope = Scope.of(container)
        self._problems = ProblemTally()
        self._last_full = float("-inf")  # when the last full run was asked for (monotonic)
        self._thread = threading.Thread(
            target=self._loop, name=f"watch-{container.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop for good (from any thread): the watcher's channel closes, and with it the
        remote watcher."""
        self._stop.set()
        feed = self._feed
        if feed is not None:
            feed.close()

    def settling(self, files: list[RemoteFile]) -> None:
        """Files a full run skipped as still settling (from any thread): synced once they
        are older than `settle` or a look sees them unchanged, not at the next poll."""
        if self._settling.qsize() < MAX_SETTLING_BATCHES:  # a watcher down for long
            self._settling.put(files[:MAX_PENDING])

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _set_state(self, state: WatchState) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            reason, over_budget = self._run_once()
            if self._stop.is_set():
                break
            if self.state == WatchState.WATCHING or over_budget:
                self.log.warning("watch_stopped", backend=self.backend, error=reason)
            self._set_state(WatchState.POLLING)
            steady = BUDGET_STEADY_S if over_budget else STEADY_S
            failures = 1 if time.monotonic() - started > steady else failures + 1
            self.restarts += 1
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1]
            self._stop.wait(delay)
        if self.state == WatchState.WATCHING:
            self.log.info("watch_stopped", backend=self.backend, error="stopped")
        self._set_state(WatchState.POLLING)

    def _run_once(self) -> tuple[str, bool]:
        """Start the watcher and follow it until it ends; return why it ended, and whether
        it went over its budget."""
        try:
            feed = self.remote.watch()
        except RemoteError as exc:
            self.log.debug("watch_start_failed", error=str(exc))
            return str(exc), False
        except Exception as exc:  # a defect must not end live mode for good
            self.log.debug("watch_start_failed", error=f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}", False
        self._feed = feed
        try:
            if self._stop.is_set():
                return "stopped", False
            self._follow(feed)
            return "stopped", False
        except OverBudget as exc:
            return str(exc), True
        except RemoteError as exc:
            return str(exc), False
        except Exception as exc:
            self.log.debug("watch_failed", error=f"{type(exc).__name__}: {exc}")
            return f"{type(exc).__name__}: {exc}", False
        finally:
            self._feed = None
            feed.close()
            self._report_problems(force=True)

    def _follow(self, feed: WatchFeed) -> None:
        """Turn what `feed` reports into runs until it ends. Raise OverBudget when it sends
        more than its budget, RemoteError when it ends."""
        changes = Changes()
        budget = WatchBudget()
        burst = Burst()
        interpret = RecordInterpreter(self._scope, self._problems, self._started)
        received = feed.received
        settle_ns = int(self.container.sync.settle_s * NS)
        while not self._stop.is_set():
            records, problems = feed.read(self._wait(changes, burst))
            now = time.monotonic()
            for problem, count in Counter(problems).items():
                self._problems.add(problem, count=count)
            over = budget.spend(len(records) + len(problems), feed.received - received, now)
            received = feed.received
            if over is not None:
                self._problems.add("not read: the watcher went over its budget", count=len(records))
                raise OverBudget(over)
            handed_on = not self._settling.empty()
            while not self._settling.empty():
                for remote in self._settling.get_nowait():
                    changes.looked(remote)
            # A hand-off counts as a burst: two full runs that saw a file unchanged make it
            # complete, and only a burst's end takes complete files.
            if interpret.note(records, changes) or handed_on:
                burst.noted(now, pushed=not handed_on and all(r.pushed for r in records if r.file))
            self._report_problems()
            if not changes:
                burst.reset()  # a burst that cancelled itself (written, then deleted)
                continue
            if self.host.paused or self._full_run_wait(changes, now) > 0:
                continue
            settled = changes.next_settled_ns(settle_ns)
            if burst.over(now) or (settled is not None and settled <= self._remote_now_ns()):
                burst.reset()
                self._take(changes, settle_ns, now)

    def _take(self, changes: Changes, settle_ns: int, now: float) -> None:
        """Sync what is ready in `changes`; stop for good once the container is gone."""
        ready = changes.take(self._remote_now_ns(), settle_ns)
        if ready.full:
            self._last_full = now
        if (ready.full or ready.files) and not self.host.sync_changed(
            None if ready.full else ready.files
        ):
            self._stop.set()

    def _wait(self, changes: Changes, burst: Burst) -> float:
        """How long the next read may wait: until the burst would end (or a full run
        held back may start), else a while."""
        if not burst or self.host.paused:
            return IDLE_READ_S
        now = time.monotonic()
        held = self._full_run_wait(changes, now)
        if held > 0:
            return min(IDLE_READ_S, held)
        return burst.ends_in(now)

    def _full_run_wait(self, changes: Changes, now: float) -> float:
        """How long a full run that `changes` asks for must still wait (0: none asked for,
        or it may start): at most one every FULL_RUN_GAP_S, whatever the watcher says."""
        if not changes.overflowed:
            return 0.0
        return max(0.0, self._last_full + FULL_RUN_GAP_S - now)

    def _started(self, backend: str) -> None:
        """A watcher was established: one full run queued."""
        self.backend = backend
        self.log.info("watch_started", backend=backend)
        self._set_state(WatchState.WATCHING)
        self.host.queue_full_run()  # what changed before the watches were placed

    def _report_problems(self, force: bool = False) -> None:
        """Log what the tally counted, as one record, at most once a period (`force`: the
        watcher ended)."""
        summary = self._problems.report(time.monotonic(), force)
        if summary is not None:
            self.log.warning(
                "watch_problems",
                error=summary.text,
                skipped=summary.skipped,
                reasons=summary.reasons,
                examples=list(summary.examples),
            )

    def _remote_now_ns(self) -> int:
        try:
            clock = self.remote.probe().clock
        except RemoteError:
            clock = ContainerClock()
        return clock.now_ns()
