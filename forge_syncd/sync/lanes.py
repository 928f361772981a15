"""Spreading one run's fetch over the lanes its transport offers (`sync.connections`).

Where one TCP connection is held below the link (a long, lossy path: its loss rate caps it
near MSS/RTT x 1.22/sqrt(p) whatever its window), the SSH transport opens extra connections
and offers each as a lane (`Transport.fetch_lanes`). The files are dealt out largest first,
each to the lane with the fewest bytes so far, so the lanes finish together; the first lane
(the kept-open connection) starts at once, each other one on a thread of its own as soon as
its connection is open (a lane the server refuses leaves its share to the others), every
file handed to the same `Committer` (which lands files from several transfer threads
already: SFTP's workers), so every guarantee of a single stream holds: verified copies,
versions, batches made durable before they are recorded, cancel. A lane whose connection
breaks hands its files back as failed transfers, which its transport fetches again in the
same call (over its SFTP fallback) or the next run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from forge_syncd.remote.errors import LaneRefused
from forge_syncd.remote.transport import FetchLane
from forge_syncd.remote.types import FetchCallbacks, FetchItem, FetchReport


def spread(items: Sequence[FetchItem], lanes: int) -> list[list[FetchItem]]:
    """Given the items of one fetch and a number of lanes, return one list of items per
    lane (none empty, so at most len(items) lists): largest file first, each to the lane
    with the fewest bytes so far (ties: the lower lane), so they finish together. Each
    lane's list keeps the order the items came in (the folder order of the listing)."""
    count = max(1, min(lanes, len(items)))
    if count == 1:
        return [list(items)] if items else []
    loads = [0] * count
    lane_of: dict[int, int] = {}
    by_size = sorted(range(len(items)), key=lambda i: -items[i].remote.size)
    for index in by_size:
        lane = min(range(count), key=lambda n: (loads[n], n))
        lane_of[index] = lane
        loads[lane] += items[index].remote.size
    shares: list[list[FetchItem]] = [[] for _ in range(count)]
    for index, item in enumerate(items):
        shares[lane_of[index]].append(item)
    return shares


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


class _Shares:
    """Shares of one fetch given back by refused lanes, taken by the others one at a time."""

    def __init__(self, shares: list[list[FetchItem]]) -> None:
        self._left = shares
        self._lock = threading.Lock()

    def take(self) -> list[FetchItem] | None:
        with self._lock:
            return self._left.pop(0) if self._left else None

    def give_back(self, share: list[FetchItem]) -> None:
        with self._lock:
            self._left.append(share)


def fetch_over(
    lanes: Sequence[FetchLane],
    items: Sequence[FetchItem],
    calls: FetchCallbacks,
    cancel: threading.Event,
) -> Spread:
    """Fetch `items` spread over `lanes` (one share each, see `spread`): the first lane
    starts at once on this thread, the others on threads of their own as their connections
    open. A lane takes another share when it has finished one: a refused lane's share
    (LaneRefused) is fetched by the others. A lane that raises anything else does not stop
    the others: once all have ended, the first such error is raised again (the files it
    did not hand over are then not synced: the next run's)."""
    shares = spread(items, len(lanes))
    if len(shares) <= 1:
        return Spread(lanes[0].fetch(shares[0] if shares else [], calls, cancel))
    given_back = _Shares([])
    reports: list[FetchReport] = []
    errors: list[BaseException] = []
    refused: list[str] = []
    used: set[int] = set()

    def run(index: int, share: list[FetchItem] | None) -> None:
        while share is not None:
            try:
                reports.append(lanes[index].fetch(share, calls, cancel))
                used.add(index)
            except LaneRefused as exc:
                given_back.give_back(share)
                if not exc.said:
                    refused.append(str(exc))
                return
            except Exception as exc:  # raised again below, once every lane has ended
                errors.append(exc)
                return
            share = given_back.take()

    workers = [
        threading.Thread(
            target=run, args=(index, shares[index]), name=f"fetch-lane-{index}", daemon=True
        )
        for index in range(1, len(shares))
    ]
    for worker in workers:
        worker.start()
    run(0, shares[0])
    for worker in workers:
        worker.join()
    if not errors:
        run(0, given_back.take())  # shares given back after the first lane had finished
    if errors:
        raise errors[0]
    return Spread(merge_reports(reports), max(1, len(used)), refused)
