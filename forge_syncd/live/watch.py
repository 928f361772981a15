"""Live mode: a container's remote watcher turned into syncs of just the changed files.

One `LiveWatch` thread per container (with `sync.watch: true`) keeps the remote watcher
(`transports/shell/watch.py`) running on the kept-open connection. What it reports collects in
`Changes` (`live/changes.py`, bounded); a burst ends after DEBOUNCE_S without a new record,
or MAX_BATCH_S after its first (a burst that never pauses is synced every second), and its
complete files are synced by one run without a listing. The container's runs never overlap
(the runner's job lock): the scheduled `interval` stays as the full reconciliation.

Whenever a watcher is established (first start, restart, a fallback to another watcher)
one full run is queued, since changes made before its watches were in place were not seen;
a header that names no later fallback is a bad record, not another full run. A watcher that
cannot start, ends, or sends more than its budget (`live/budget.py`) is restarted after
a growing delay; meanwhile the container is `polling` on its schedule. Records that are no
use (unparsable, refused, outside the synced `folders`) are counted and logged as one
summary a minute at most; a lost track of changes (`o`, too many pending names) makes a full
run at most every FULL_RUN_GAP_S.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable

from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.kinds import WatchState
from forge_syncd.live.budget import ProblemTally, WatchBudget
from forge_syncd.live.changes import MAX_PENDING, Changes
from forge_syncd.logs import get_logger
from forge_syncd.mtimes import NS
from forge_syncd.paths import display
from forge_syncd.patterns import Scope
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.transport import Transport, WatchFeed
from forge_syncd.remote.types import RemoteFile, WatchRecord

DEBOUNCE_S = 0.1
MAX_BATCH_S = 1.0
IDLE_READ_S = 1.0
RESTART_DELAYS_S = (1.0, 5.0, 30.0, 120.0, 300.0)
STEADY_S = 60.0  # a watcher that ran this long resets the restart delay
BUDGET_STEADY_S = 3600.0  # the same, for a watcher that then went over its budget
FULL_RUN_GAP_S = 60.0  # a lost track of changes makes a full run at most this often
# The watchers in the order the remote script falls back from one to the next: a header
# (`h`) counts only for the first watcher of a channel or a later one in this order.
FALLBACK_ORDER = ("inotifywait", "python3", "find")
MAX_SETTLING_BATCHES = 16  # full runs' settling files held while no watcher reads them

# `sync(files)` runs an incremental sync of `files` (None: a full run) and returns False
# once the container is gone (its runner retired).
SyncChanged = Callable[[list[RemoteFile] | None], bool]


class OverBudget(Exception):
    """The watcher sent more than its budget: it counts as failed."""


class LiveWatch:
    """Keeps one container's remote watcher running and syncs what it reports."""

    def __init__(
        self,
        container: ContainerConfig,
        remote: Transport,
        sync: SyncChanged,
        reconcile: Callable[[], None],
        paused: Callable[[], bool],
        on_state: Callable[[WatchState], None] | None = None,
    ) -> None:
        """`sync(files)`: run an incremental sync of `files` (None: a full one), False once
        the container is gone; `reconcile()`: queue a full run; `paused()`: whether syncs
        are held; `on_state(state)`: told `watching` or `polling` when that changes."""
        self.container = container
        self.remote = remote
        self.sync = sync
        self.reconcile = reconcile
        self.paused = paused
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
        self._established = ""  # the watcher the current channel said it runs (`h`)
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
        self._established = ""
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
        received = feed.received
        first = last = 0.0  # when the current burst's first and latest records came
        settle_ns = int(self.container.sync.settle_s * NS)
        while not self._stop.is_set():
            records, problems = feed.read(self._wait(changes, first, last))
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
            if self._note(records, changes) or handed_on:
                first = first or now
                last = now
            self._report_problems()
            if not changes:
                first = last = 0.0  # a burst that cancelled itself (written, then deleted)
                continue
            if self.paused() or self._full_run_wait(changes, now) > 0:
                continue
            burst_over = first and (now - last >= DEBOUNCE_S or now - first >= MAX_BATCH_S)
            settled = changes.next_settled_ns(settle_ns)
            if burst_over or (settled is not None and settled <= self._remote_now_ns()):
                first = last = 0.0
                ready = changes.take(self._remote_now_ns(), settle_ns)
                if ready.full:
                    self._last_full = now
                if (ready.full or ready.files) and not self.sync(
                    None if ready.full else ready.files
                ):
                    self._stop.set()

    def _wait(self, changes: Changes, first: float, last: float) -> float:
        """How long the next read may wait: until the burst would end (or a full run
        held back may start), else a while."""
        if not first or self.paused():
            return IDLE_READ_S
        now = time.monotonic()
        held = self._full_run_wait(changes, now)
        if held > 0:
            return min(IDLE_READ_S, held)
        return max(0.0, min(last + DEBOUNCE_S, first + MAX_BATCH_S) - now)

    def _full_run_wait(self, changes: Changes, now: float) -> float:
        """How long a full run that `changes` asks for must still wait (0: none asked for,
        or it may start): at most one every FULL_RUN_GAP_S, whatever the watcher says."""
        if not changes.overflowed:
            return 0.0
        return max(0.0, self._last_full + FULL_RUN_GAP_S - now)

    def _note(self, records: list[WatchRecord], changes: Changes) -> bool:
        """Take the records into `changes`, counting those of no use; return whether any
        was a change."""
        changed = False
        for record in records:
            if record.event == "h":
                self._hello(record.message)
            elif record.event == "x":
                self._problems.add("watcher failure", record.message)
            elif record.event == "o":
                changes.overflow()
                changed = True
            elif record.event in ("w", "s", "d") and not self._ours(record):
                continue
            elif record.event == "w" and record.file is not None:
                changes.written(record.file)
                changed = True
            elif record.event == "s" and record.file is not None:
                changes.looked(record.file)
                changed = True
            elif record.event == "d":
                changes.deleted(record.path)
            elif record.event == "skipped":
                self._problems.add(f"file skipped ({record.message})", display(record.path))
        return changed

    def _hello(self, backend: str) -> None:
        """A header (`h`): the first of a channel, or a fallback to a later watcher, is a
        watcher established (one full run queued); any other is a bad record."""
        before = self._established
        later = (
            before in FALLBACK_ORDER
            and backend in FALLBACK_ORDER
            and FALLBACK_ORDER.index(backend) > FALLBACK_ORDER.index(before)
        )
        if before and not later:
            self._problems.add("repeated watcher header", backend)
            return
        self._established = self.backend = backend
        self.log.info("watch_started", backend=backend)
        self._set_state(WatchState.WATCHING)
        self.reconcile()  # what changed before the watches were placed

    def _ours(self, record: WatchRecord) -> bool:
        """Whether a `w`, `s` or `d` record names a file this container syncs: inside its
        `folders` (else a bad record: no watcher was asked to look there) and wanted by
        `include`/`exclude` (else dropped quietly: a listing skips it too)."""
        path = record.file.path if record.file is not None else record.path
        if not self._scope.covers(path):
            self._problems.add("outside the synced folders", display(path))
            return False
        return record.event == "d" or self._scope.wants(path)

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
