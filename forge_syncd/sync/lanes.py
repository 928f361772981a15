"""Spreading one run's fetch over the lanes its transport offers (`sync.connections`).

Where one TCP connection is held below the link (a long, lossy path: its loss rate caps it
near MSS/RTT x 1.22/sqrt(p) whatever its window), the SSH transport opens extra connections
and offers each as a lane (`Transport.fetch_lanes`). The files are dealt out largest first,
each to the lane with the fewest bytes so far, so the lanes finish together: the kept-open
connection starts at once on its fair share, the rest is dealt once the extra connections
are open (a lane the server refuses gets none), counting what the first has left. Every
file is handed to the same `Committer` (which lands files from several transfer threads
already: SFTP's workers), so every guarantee of a single stream holds: verified copies,
versions, batches made durable before they are recorded, cancel. A lane whose connection
breaks hands its files back as failed transfers, which its transport fetches again in the
same call (over its SFTP fallback) or the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from forge_syncd.remote.errors import LaneRefused, RemoteError
from forge_syncd.remote.transport import FetchLane, Transport
from forge_syncd.remote.types import FetchCallbacks, FetchItem, FetchReport


def deal(items: Sequence[FetchItem], loads: Sequence[int]) -> list[list[FetchItem]]:
    """Given items and the bytes each lane has to fetch already, return one list of items
    per lane (some may be empty): largest file first, each to the lane with the fewest
    bytes so far (ties: the one with fewer files, then the lower lane: empty files are
    spread too). Each list keeps the order the items came in (the folder order of the
    listing)."""
    load = list(loads)
    count = [0] * len(load)
    lane_of: dict[int, int] = {}
    for index in sorted(range(len(items)), key=lambda i: -items[i].remote.size):
        lane = min(range(len(load)), key=lambda n: (load[n], count[n], n))
        lane_of[index] = lane
        load[lane] += items[index].remote.size
        count[lane] += 1
    shares: list[list[FetchItem]] = [[] for _ in load]
    for index, item in enumerate(items):
        shares[lane_of[index]].append(item)
    return shares


def spread(items: Sequence[FetchItem], lanes: int) -> list[list[FetchItem]]:
    """Given the items of one fetch and a number of lanes, return one list of items per
    lane, none empty (so at most len(items) lists), dealt as `deal` does from empty
    lanes, so they finish together."""
    return deal(items, [0] * max(1, min(lanes, len(items)))) if items else []


def merge_reports(reports: Sequence[FetchReport]) -> FetchReport:
    """Given the lanes' reports (the first lane's first), return one for the whole fetch:
    the first lane's way of transfer, every refused member, the fallbacks added up with the
    first reason given."""
    merged = FetchReport(transfer=reports[0].transfer if reports else None)
    for report in reports:
        merged.refused += report.refused
        merged.fallback += report.fallback
        merged.fallback_reason = merged.fallback_reason or report.fallback_reason
    return merged


@dataclass
class Spread:
    """How a fetch spread went: the merged report, how many lanes fetched a share, and the
    refusals of extra lanes not reported before (log them)."""

    report: FetchReport
    lanes: int = 1
    refused: list[str] = field(default_factory=list)


class _Run:
    """One fetch spread over the transport and its extra lanes (see `fetch_over`)."""

    def __init__(self, calls: FetchCallbacks, cancel: threading.Event) -> None:
        self.calls = calls
        self.cancel = cancel
        self.reports: list[FetchReport] = []
        self.errors: list[BaseException] = []
        self.refused: list[str] = []
        self.left_over: list[FetchItem] = []  # shares of lanes lost after they were ready
        self.used = 1
        self.received = 0  # bytes the transport's own lane wrote so far
        self._lock = threading.Lock()

    def count(self, nbytes: int) -> None:
        with self._lock:
            self.received += nbytes
        self.calls.on_bytes(nbytes)

    def fetch(self, lane: Transport | FetchLane, share: list[FetchItem], own: bool) -> None:
        """Fetch `share` over `lane`, noting its report or error (a lane lost after it was
        ready leaves its share over, for the transport's own lane)."""
        calls = dataclasses.replace(self.calls, on_bytes=self.count) if own else self.calls
        try:
            self.reports.append(lane.fetch(share, calls, self.cancel))
        except LaneRefused:
            with self._lock:
                self.left_over += share
        except Exception as exc:  # raised again once every lane has ended
            self.errors.append(exc)

    def open_all(self, extra: Sequence[FetchLane]) -> list[FetchLane]:
        """Open the extra lanes, all at once; return those ready (a refusal not said before
        is noted, to be logged)."""
        ready: list[FetchLane] = []

        def open_one(lane: FetchLane) -> None:
            try:
                lane.ready()
                ready.append(lane)
            except LaneRefused as exc:
                if not exc.said:
                    self.refused.append(str(exc))
            except Exception as exc:
                self.refused.append(f"{type(exc).__name__}: {exc}")

        for opener in [_started(open_one, lane) for lane in extra]:
            opener.join()
        return ready


def _started(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def fetch_over(
    own: Transport,
    extra: Sequence[FetchLane],
    items: Sequence[FetchItem],
    calls: FetchCallbacks,
    cancel: threading.Event,
) -> Spread:
    """Fetch `items` over the transport `own` and its `extra` lanes. The transport starts
    at once on its fair share (the first of `spread`), while the extra lanes open their
    connections; once they are ready (or refused), the other files are dealt (`deal`) over
    the ready ones and the transport, counting what the transport has yet to fetch of its
    first share, so that a lane that starts late is given less and all finish together.
    The transport fetches its second share after its first; a lane lost after it was ready
    leaves its share to it too. A lane that raises anything else does not stop the others:
    once all have ended, its error is raised again (the files it did not hand over are then
    not synced: the next run's)."""
    if not extra or len(items) <= 1:
        return Spread(own.fetch(items, calls, cancel))
    first = spread(items, 1 + len(extra))[0]
    taken = {id(item) for item in first}
    rest = [item for item in items if id(item) not in taken]
    run = _Run(calls, cancel)
    second: list[FetchItem] = []
    dealt = threading.Event()

    def own_lane() -> None:
        run.fetch(own, first, own=True)
        dealt.wait()
        if second and not run.errors:
            run.fetch(own, second, own=False)

    workers = [_started(own_lane)]
    ready = run.open_all(extra)
    left = max(0, sum(item.remote.size for item in first) - run.received)
    shares = deal(rest, [left] + [0] * len(ready))
    second += shares[0]
    if second:
        with contextlib.suppress(RemoteError):
            own.prepare_fetch()  # its next stream's shell starts while the first streams
    dealt.set()
    for lane, share in zip(ready, shares[1:], strict=True):
        if share:
            workers.append(_started(run.fetch, lane, share, False))
    for worker in workers:
        worker.join()
    if run.left_over and not run.errors:
        run.fetch(own, run.left_over, own=False)
    if run.errors:
        raise run.errors[0]
    used = 1 + sum(1 for share in shares[1:] if share)
    return Spread(merge_reports(run.reports), used, run.refused)
