"""Deliver the outbox to every sink: in order, at least once, each sink on its own.

One thread per sink reads events past that sink's cursor, delivers them one by one, and
moves the cursor after each batch (and before waiting on a failure), so a crash redelivers
at most one batch and loses nothing. A failing sink retries the same event with
exponential backoff (1 s doubling to 5 min, `SinkBackoff`) and delays only itself: events
that arrive meanwhile wait in the outbox, neither cutting the wait short nor counting as
failures, so the backoff grows with the outage's length, not with the traffic.

`searchable()` hands the control socket's `find` the first sink that keeps a catalog
(`catalog`, `postgres`, or a plugin with a `find` method): the worker's own sink object,
loaded now if no event has reached it yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from forge_syncd.catalog.query import Searchable
from forge_syncd.config.model import SinkConfig
from forge_syncd.events.sinks import Sink, load_sink
from forge_syncd.events.sinks.notify import NOTIFY_TYPES
from forge_syncd.events.sinks.notify.core import RESULTS as NOTIFY_RESULTS
from forge_syncd.library.manifest import Manifest
from forge_syncd.logs import get_logger

BATCH = 100
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 300.0
# How long a healthy, idle worker sleeps between looks at the outbox (new events wake it).
IDLE_POLL_S = 5.0
# Sink types that may answer `find` (a plugin does if its sink has a `find` method).
CATALOG_TYPES = frozenset({"catalog", "postgres", "python"})
# Sink types with work of their own to resume at start (messages, copies).
STATEFUL_TYPES = NOTIFY_TYPES | {"mirror"}


class SinkBackoff:
    """When a failing sink may be tried again. Pure: the clock is given.

    A failure counts only once its wait has elapsed: an attempt that fails before then (a
    caller that did not wait) neither counts nor moves the wait. So after n failures the
    wait is 1, 2, 4 ... s (at most 5 min) and n - 1 waits have elapsed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures = 0
        self.retry_at: float | None = None

    def wait_s(self) -> float:
        """Return how long the next attempt should wait (0: try now)."""
        if self.retry_at is None:
            return 0.0
        return max(0.0, self.retry_at - self.clock())

    def delay_s(self) -> float:
        """Return the whole wait after the current number of failures (0 without any)."""
        if self.failures == 0:
            return 0.0
        return float(min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self.failures - 1)))

    def failed(self) -> bool:
        """Record a failed attempt; return whether it counted (False: made during a wait)."""
        if self.wait_s() > 0:
            return False
        self.failures += 1
        self.retry_at = self.clock() + self.delay_s()
        return True

    def succeeded(self) -> None:
        self.failures, self.retry_at = 0, None


class SinkWorker:
    """Delivers the outbox to one sink."""

    def __init__(
        self,
        config: SinkConfig,
        manifest: Manifest,
        on_error: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.manifest = manifest
        self.on_error = on_error
        self.log = get_logger(sink=config.name)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.backoff = SinkBackoff(clock)
        self.last_error: str | None = None
        self.sink: Sink | None = None
        self._load_lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name=f"sink-{self.name}", daemon=True)

    @property
    def failures(self) -> int:
        """Failed attempts since the last delivery, each after its whole wait."""
        return self.backoff.failures

    def _loop(self) -> None:
        if self.config.type in STATEFUL_TYPES:
            # Built now, not at the first event: messages or copies it kept from before a
            # restart (held by min_interval, or not delivered) go out without waiting for one.
            try:
                self.loaded_sink()
            except Exception as exc:
                self.log.warning("sink_load_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        while not self.stop.is_set():
            wait = self.backoff.wait_s()
            if wait > 0:
                # New events wake the worker; during a backoff they wait in the outbox.
                self.stop.wait(timeout=wait)
                continue
            self.wake.clear()
            if not self.deliver_pending() and not self.failures:
                self.wake.wait(timeout=IDLE_POLL_S)

    def deliver_pending(self) -> bool:
        """Deliver one batch; return True if a full batch went (there may be more)."""
        cursor = self.manifest.outbox.cursor(self.name)
        events = self.manifest.outbox.after(cursor, BATCH)
        delivered = cursor
        try:
            for event in events:
                if self.stop.is_set():
                    break
                self._deliver(event)
                delivered = event["id"]
        except Exception as exc:
            self._failed(event, exc)
            return False
        finally:
            if delivered != cursor:
                self.manifest.outbox.set_cursor(self.name, delivered)
        if events and self.failures:
            self.log.info("sink_recovered", after_failures=self.failures)
        self.backoff.succeeded()
        self.last_error = None
        return len(events) == BATCH

    def _deliver(self, event: dict[str, Any]) -> None:
        self.loaded_sink().deliver(event)

    def loaded_sink(self) -> Sink:
        """Return the sink, built on first use (by delivery or by a search, whichever comes
        first). Raise what building it raises."""
        with self._load_lock:
            if self.sink is None:
                self.sink = load_sink(self.config, self.manifest.path.parent)
            return self.sink

    def _failed(self, event: dict[str, Any], exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        counted = self.backoff.failed()
        asked = getattr(exc, "retry_after_s", None)  # a service's own wait (a 429)
        if isinstance(asked, int | float) and self.backoff.retry_at is not None:
            self.backoff.retry_at = max(self.backoff.retry_at, self.backoff.clock() + asked)
        if not counted:
            return  # tried again before the wait was over (a drain): not another failure
        self.log.warning(
            "sink_delivery_failed",
            event_id=event.get("id"),
            error=self.last_error,
            attempt=self.failures,
            retry_in_s=round(self.backoff.wait_s(), 3),
        )
        if self.on_error is not None:
            self.on_error(str(event.get("container") or ""), "sink")

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        with self._load_lock:
            if self.sink is not None:
                self.sink.close()


class Dispatcher:
    """All sinks of the config. `wake()` after new events; `pending()` for metrics/status."""

    def __init__(
        self,
        sinks: tuple[SinkConfig, ...],
        manifest: Manifest,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.workers = [SinkWorker(config, manifest, on_error) for config in sinks]

    def start(self) -> Dispatcher:
        self.manifest.on_events = self.wake
        for worker in self.workers:
            worker.thread.start()
        return self

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def pending(self) -> dict[str, int]:
        return {w.name: self.manifest.outbox.pending(w.name) for w in self.workers}

    def status(self) -> list[dict[str, Any]]:
        """Each sink's backlog; a mirror sink's also has `mirror` (its `status()`)."""
        rows: list[dict[str, Any]] = []
        for w in self.workers:
            row = {
                "name": w.name,
                "type": w.config.type,
                "pending": self.manifest.outbox.pending(w.name),
                "failures": w.failures,
                "last_error": w.last_error,
            }
            mirror = getattr(w.sink, "status", None) if w.config.type == "mirror" else None
            if callable(mirror):
                row["mirror"] = mirror()
            rows.append(row)
        return rows

    def mirror_backlog(self) -> dict[str, tuple[int, int]]:
        """Return (files still to copy, failed copies in a row) of each mirror sink (once
        built): the gauges `forge_sync_mirror_pending_files{sink}` and
        `forge_sync_mirror_failures{sink}`."""
        counts: dict[str, tuple[int, int]] = {}
        for worker in self.workers:
            sink = worker.sink
            pending = getattr(sink, "pending", None)
            if worker.config.type == "mirror" and callable(pending):
                counts[worker.name] = (int(pending()), int(getattr(sink, "failures", 0)))
        return counts

    def notifications(self) -> dict[tuple[str, str], int]:
        """Return the messages of each notification sink by result (`sent`,
        `rate_limited`, `refused`, `failed`) since the daemon started: the counter
        `forge_sync_notifications_total{sink,result}`."""
        counts: dict[tuple[str, str], int] = {}
        for worker in self.workers:
            if worker.config.type not in NOTIFY_TYPES:
                continue
            sink_counts = getattr(worker.sink, "counts", None) or {}
            for result in NOTIFY_RESULTS:
                counts[(worker.name, result)] = int(sink_counts.get(result, 0))
        return counts

    def searchable(self) -> tuple[str, Searchable] | None:
        """Return (name, sink) of the first sink that can answer `find`, or None. Raise what
        building that sink raises (a database it cannot reach)."""
        for worker in self.workers:
            if worker.config.type not in CATALOG_TYPES:
                continue
            sink = worker.loaded_sink()
            if callable(getattr(sink, "find", None)):
                return worker.name, cast(Searchable, sink)
        return None

    def drain(self, timeout_s: float) -> bool:
        """Deliver what is pending in this thread (for --once), and give mirror sinks the
        rest of `timeout_s` to copy what they queued; True if no event is left."""
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            while time.monotonic() < deadline and worker.deliver_pending():
                pass
        for worker in self.workers:  # and the copies a mirror sink queued, meanwhile
            if worker.config.type != "mirror" or worker.failures:
                continue
            try:
                settle = getattr(worker.loaded_sink(), "settle", None)
            except Exception as exc:
                worker.log.warning("sink_load_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                continue
            if callable(settle):
                settle(max(0.0, deadline - time.monotonic()))
        return not any(self.pending().values())

    def close(self) -> None:
        self.manifest.on_events = None
        for worker in self.workers:
            worker.close()
