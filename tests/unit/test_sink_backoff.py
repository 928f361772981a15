"""A failing sink's backoff (1 s doubling to 5 min) grows with the waits that elapsed, not
with the events that arrived meanwhile: the pure `SinkBackoff` with a given clock, and a
real worker thread over a real manifest with a sink that fails (a fake with the sink's
interface) and a clock the test moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.config.model import SinkConfig
from forge_syncd.events.dispatcher import BACKOFF_MAX_S, SinkBackoff, SinkWorker
from forge_syncd.library.manifest import Manifest
from tests.support.daemon import wait_until


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_during_a_wait_do_not_count_or_move_it() -> None:
    """The first failure waits 1 s; failures before that wait is over neither count nor
    raise or restart it; each elapsed wait doubles the next, up to 5 min; a success resets."""
    clock = Clock()
    backoff = SinkBackoff(clock)
    assert backoff.wait_s() == 0 and backoff.failed()
    assert (backoff.failures, backoff.wait_s()) == (1, 1.0)
    for _ in range(100):  # a burst of new events during the outage, each tried at once
        clock.now += 0.001
        assert not backoff.failed()
    assert backoff.failures == 1 and backoff.wait_s() == pytest.approx(0.9)
    waits = []
    for _ in range(12):
        clock.now += backoff.wait_s()
        assert backoff.failed()
        waits.append(backoff.wait_s())
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]
    assert backoff.failures == 13
    backoff.succeeded()
    assert (backoff.failures, backoff.wait_s()) == (0, 0)
    assert backoff.failed() and backoff.wait_s() == 1.0


def test_the_cap_is_five_minutes() -> None:
    """However long the outage, the wait stays at BACKOFF_MAX_S (300 s)."""
    clock = Clock()
    backoff = SinkBackoff(clock)
    for _ in range(64):
        clock.now += backoff.wait_s()
        backoff.failed()
    assert BACKOFF_MAX_S == 300 and backoff.wait_s() == 300


@dataclass
class FlakySink:
    """A sink (the interface: deliver, close) that refuses while `down` and counts tries."""

    down: bool = True
    tries: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.tries += 1
            if self.down:
                raise ConnectionError("database is restarting")
            self.delivered.append(event)

    def close(self) -> None:
        pass


@pytest.fixture
def manifest(tmp_path: Path) -> Iterator[Manifest]:
    opened = Manifest.open(tmp_path / "state")
    yield opened
    opened.close()


def add_event(manifest: Manifest, number: int) -> None:
    """Record one finished run with one file_synced event (its commit wakes the worker)."""
    run = manifest.runs.start("forge-a", "sync")
    event = {"type": "file_synced", "container": "forge-a", "path": f"{number}.png", "size": 1}
    manifest.runs.finish(run.run_id, "success", 1, 1, None, [event])


def test_events_during_an_outage_do_not_inflate_the_backoff(manifest: Manifest) -> None:
    """Regression (issue 23, item 8): every event that arrived while the sink was down was
    tried at once and counted as another failure, so a 3 s database restart under traffic
    left a 5 min backoff. Now 50 events arriving during the first 1 s wait (the clock does
    not move) are not tried: one failure, wait 1 s. Once the wait elapses, one more try
    (wait 2 s); once the sink is back and that wait elapses, every event is delivered in
    order and the backoff is reset."""
    clock = Clock()
    sink = FlakySink()
    worker = SinkWorker(SinkConfig("shared", "postgres", {}), manifest, clock=clock)
    worker.sink = sink
    add_event(manifest, 0)
    manifest.on_events = worker.wake.set  # what Dispatcher.start does
    worker.thread.start()
    try:
        wait_until(lambda: worker.failures == 1, timeout=30, what="the first failure")
        for number in range(1, 51):
            add_event(manifest, number)  # each commit wakes the worker
        time.sleep(0.5)  # room for a worker that (wrongly) retries on each wake to do so
        assert (sink.tries, worker.failures, worker.backoff.wait_s()) == (1, 1, 1.0)
        clock.now += 1.0
        wait_until(lambda: worker.failures == 2, timeout=30, what="the retry after 1 s")
        assert sink.tries == 2 and worker.backoff.wait_s() == 2.0
        sink.down = False
        add_event(manifest, 51)
        time.sleep(0.2)
        assert sink.tries == 2  # the new event waits for the 2 s to elapse
        clock.now += 2.0
        wait_until(lambda: len(sink.delivered) == 52, timeout=30, what="the backlog")
    finally:
        worker.close()
    assert [e["path"] for e in sink.delivered] == [f"{n}.png" for n in range(52)]
    assert (worker.failures, worker.backoff.wait_s(), worker.last_error) == (0, 0, None)
