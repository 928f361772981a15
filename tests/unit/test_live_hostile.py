"""Live mode against a hostile or broken watcher, in the unit tier (a fake container whose
watcher output goes through the real parser): its budget (records and bytes per window),
records of no use counted and logged as one summary a period, a repeated header or an
overflow flood that starts no run after run, and files outside the synced `folders` never
fetched (issue 23, items 3 and 11)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import forge_syncd.live.watch
from forge_syncd.live.budget import (
    MAX_BYTES,
    MAX_EXAMPLE,
    MAX_EXAMPLES,
    MAX_REASONS,
    MAX_RECORDS,
    ProblemTally,
    WatchBudget,
)
from forge_syncd.mtimes import NS
from forge_syncd.patterns import within_folders
from forge_syncd.remote.types import RemoteFile, WatchEvent, WatchRecord
from tests.support.daemon import read_log, wait_until
from tests.support.fake_remote import FakeRemote
from tests.unit.test_live import OLD, Live, rec, wfile

PROBLEM_EVENTS = {"watch_problems", "watch_problem", "file_skipped"}

# One of each kind of record a hostile watcher sends that is of no use to us.
BAD = (
    rec(b"z", b"zzz"),  # an unknown event
    b"\x1b[2Jnot a record",  # bytes that are no record at all
    rec(b"h", b"inotifywait"),  # a header again
    rec(b"x", b"\x1b[31mboom " + b"!" * 500),  # a failure message, hostile and long
    wfile(b"./../../etc/passwd"),  # a refused name
    wfile(b"./elsewhere/out.png"),  # outside the synced folders
)


def bad_records(count: int) -> bytes:
    """`count` bad records, each kind of BAD in turn."""
    return b"".join(itertools.islice(itertools.cycle(BAD), count))


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Live]]:
    """Make a `Live` (restarts after 0.05 s and up); all are retired at the end."""
    monkeypatch.setattr(forge_syncd.live.watch, "RESTART_DELAYS_S", (0.05, 0.05, 0.1, 0.1, 0.2))
    made: list[Live] = []

    def make(**options: Any) -> Live:
        made.append(Live(tmp_path / str(len(made)), **options))
        return made[-1]

    yield make
    for one in made:
        one.close()


def logged(tmp_path: Path, events: set[str] | None = None) -> list[dict[str, Any]]:
    records = read_log(tmp_path / "log.jsonl")
    return [r for r in records if events is None or r["event"] in events]


# --- the pure parts: budget, tally, folders ----------------------------------------------


def test_the_budget_counts_records_and_bytes_per_window() -> None:
    """Within a window the records and bytes add up; past either limit `spend` says why;
    a new window starts afresh."""
    budget = WatchBudget(max_records=10, max_bytes=100, window_s=10.0)
    assert budget.spend(6, 50, now=0.0) is None
    assert budget.spend(4, 50, now=9.9) is None  # exactly at both limits
    over = budget.spend(1, 0, now=9.95)
    assert over is not None and "10 records in 10 s" in over
    assert budget.spend(10, 100, now=10.0) is None  # a new window
    over = budget.spend(0, 1, now=12.0)
    assert over is not None and "100 bytes" in over


def test_the_tally_reports_once_a_period_with_counts_and_few_examples() -> None:
    """The first problems are reported at once; later ones wait for the period's end
    (counted, not lost) unless forced; a summary counts per reason and keeps one
    printable, cut example for each of the first few reasons."""
    tally = ProblemTally(every_s=60.0)
    assert tally.report(0.0) is None  # nothing counted
    tally.add("unknown watcher record", count=5)
    tally.add("watcher failure", "\x1b[31m" + "boom " * 100)
    first = tally.report(1.0)
    assert first is not None and first.skipped == 6
    assert first.reasons == {"unknown watcher record": 5, "watcher failure": 1}
    assert first.text == "6 records skipped: 5 unknown watcher record; 1 watcher failure"
    assert len(first.examples) == 1 and first.examples[0].startswith("watcher failure: \\x1b")
    assert all(len(e) <= MAX_EXAMPLE and e.isprintable() for e in first.examples)
    for n in range(1000):
        tally.add(f"reason {n % 40}", f"example {n}")
    assert tally.report(30.0) is None  # within the period
    later = tally.report(61.0)
    assert later is not None and later.skipped == 1000
    assert len(later.reasons) == MAX_REASONS + 1 and later.reasons["other"] == 1000 - 25 * 12
    assert len(later.examples) == MAX_EXAMPLES
    tally.add("watcher failure", "the end")
    assert tally.report(62.0) is None
    forced = tally.report(62.0, force=True)
    assert forced is not None and forced.text == "1 record skipped: 1 watcher failure"


@pytest.mark.parametrize(
    ("path", "inside"),
    [
        (b"txt2img-images/a.png", True),
        (b"txt2img-images/2026-12-07/a.png", True),
        (b"txt2img-images", True),  # a folder entry that is a file is listed as itself
        (b"txt2img-images-evil/a.png", False),
        (b"txt2img-imagesa.png", False),
        (b"other/txt2img-images/a.png", False),
        (b"a.png", False),
    ],
)
def test_within_folders_is_what_a_listing_covers(path: bytes, inside: bool) -> None:
    """A path is inside `folders` when it is one of them or under one, never by a shared
    prefix; with no folders every path is."""
    assert within_folders(path, ("txt2img-images", "img2img-images")) is inside
    assert within_folders(path, ())


# --- a flood ------------------------------------------------------------------------------


def test_a_flood_of_100000_bad_records_is_logged_once_and_starts_no_run(
    live: Callable[..., Live], tmp_path: Path
) -> None:
    """100,000 records of no use (unknown, garbage, repeated headers, failures, refused
    names, files outside the folders) at once: the watcher is over its budget and counts
    as failed (restarted, which queues one full run like any restart); the log holds one
    summary of them (counts per reason, a few bounded examples), not one line each; no
    sync run starts; a good file reported afterwards still lands."""
    box = live(folders=("txt2img-images",)).start()
    wait_until(lambda: box.reconciles == 1, 10, "the first reconcile")
    for _ in range(10):
        box.watcher.feed(bad_records(10_000))
    wait_until(lambda: box.remote.watchers == 2, 10, "the watcher restarted")
    wait_until(lambda: box.runner.watch_state == "watching", 10, "watching again")
    time.sleep(0.3)
    assert box.reconciles == 2 and box.runs() == 0
    problems = logged(tmp_path, PROBLEM_EVENTS)
    assert 1 <= len(problems) <= 2  # the first at once, the rest when the watcher ended
    assert {r["event"] for r in problems} == {"watch_problems"}
    # Every bad record read is counted (the budget also counted the one good header).
    assert MAX_RECORDS <= sum(r["skipped"] for r in problems) <= 100_000
    summary = problems[-1]
    assert summary["level"] == "warning"
    assert summary["reasons"]["not read: the watcher went over its budget"] > 0
    assert set(summary["reasons"]) <= {
        "not read: the watcher went over its budget",
        "unknown watcher record",
        "unparsable watcher output",
        "repeated watcher header",
        "watcher failure",
        "file skipped (name has an empty, '.' or '..' component)",
        "outside the synced folders",
    }
    assert len(summary["examples"]) <= MAX_EXAMPLES
    assert all(len(e) <= MAX_EXAMPLE and "\x1b" not in e for e in summary["examples"])
    stopped = logged(tmp_path, {"watch_stopped"})
    assert len(stopped) == 1 and stopped[0]["error"].startswith("over budget")
    assert len(logged(tmp_path)) <= 10
    box.remote.written(b"txt2img-images/good.png", b"good", OLD)
    wait_until(lambda: box.has(b"txt2img-images/good.png", b"good"), 10, "good.png")


def test_bad_records_within_the_budget_are_one_summary_a_period(
    live: Callable[..., Live], tmp_path: Path
) -> None:
    """Bad records that stay within the budget (3,000 over several reads, a few hundred
    of them repeated headers): the watcher goes on (no restart), one full run was queued
    (for the one real header), and the log holds one summary until the period ends; a good
    file reported among them lands."""
    box = live(folders=("txt2img-images",)).start()
    for _ in range(6):
        box.watcher.feed(bad_records(500))
        time.sleep(0.05)
    box.remote.written(b"txt2img-images/good.png", b"good", OLD)
    box.watcher.feed(bad_records(30))
    wait_until(lambda: box.has(b"txt2img-images/good.png", b"good"), 10, "good.png")
    assert box.remote.watchers == 1 and box.runner.live is not None
    assert box.runner.live.restarts == 0 and box.reconciles == 1 and box.runs() == 1
    problems = logged(tmp_path, PROBLEM_EVENTS)
    assert len(problems) == 1 and problems[0]["event"] == "watch_problems"


def test_repeated_headers_start_at_most_one_full_run(live: Callable[..., Live]) -> None:
    """1,000 headers (`h`) from one watcher queue one full run, the first; the others are
    bad records."""
    box = live().start()
    for _ in range(1000):
        box.watcher.push(WatchRecord(WatchEvent.STARTED, message="fake"))
    box.remote.written(b"after.png", b"after", OLD)  # a sign the records were read
    wait_until(lambda: box.has(b"after.png", b"after"), 10, "after.png")
    assert box.reconciles == 1 and box.remote.watchers == 1


def test_a_fallback_to_a_later_watcher_reconciles_an_earlier_one_does_not(
    live: Callable[..., Live],
) -> None:
    """The remote script falls back inotifywait -> python3 -> find, each saying `h` once
    established: each later one queues a full run (its watches are new); a header naming
    the same or an earlier watcher does not."""
    remote = FakeRemote(backend="inotifywait")
    box = live(remote=remote).start()
    wait_until(lambda: box.reconciles == 1, 10, "the first reconcile")
    for name in ("inotifywait", "python3", "inotifywait", "python3", "find", "find", "x"):
        box.watcher.push(WatchRecord(WatchEvent.STARTED, message=name))
    box.remote.written(b"after.png", b"after", OLD)
    wait_until(lambda: box.has(b"after.png", b"after"), 10, "after.png")
    assert box.reconciles == 3
    assert box.runner.live is not None and box.runner.live.backend == "find"


def test_an_overflow_flood_makes_one_full_run_per_gap(
    live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`o` records (lost track: reconcile) every 20 ms: one full run, then none until the
    gap has passed (the watcher cannot make the container list itself again and again),
    then the one held back."""
    monkeypatch.setattr(forge_syncd.live.watch, "FULL_RUN_GAP_S", 5.0)
    box = live().start()
    box.remote.write(b"quiet.png", b"quiet", OLD)
    for _ in range(75):
        box.watcher.push(WatchRecord(WatchEvent.OVERFLOW))
        time.sleep(0.02)
    wait_until(lambda: box.remote.calls.count("list") >= 1, 10, "the first full run")
    time.sleep(0.5)
    assert box.remote.calls.count("list") == 1 and box.has(b"quiet.png", b"quiet")
    wait_until(lambda: box.remote.calls.count("list") == 2, 10, "the held full run")


def test_a_watcher_past_its_byte_budget_counts_as_failed(
    live: Callable[..., Live], tmp_path: Path
) -> None:
    """More bytes than the budget with hardly a record in them (one endless unterminated
    record): the watcher is restarted; one summary, one `watch_stopped` naming the
    budget."""
    box = live().start()
    chunk = b"w\0" + b"A" * (256 * 1024)
    for _ in range(MAX_BYTES // len(chunk) + 2):
        box.watcher.feed(chunk)
    wait_until(lambda: box.remote.watchers == 2, 10, "the watcher restarted")
    stopped = logged(tmp_path, {"watch_stopped"})
    assert len(stopped) == 1 and "bytes" in stopped[0]["error"]
    assert len(logged(tmp_path, PROBLEM_EVENTS)) <= 2


class WaitsTaken(tuple[float, ...]):
    """RESTART_DELAYS_S that remembers each delay the watcher loop took from it."""

    taken: list[float]

    def __new__(cls, delays: tuple[float, ...]) -> WaitsTaken:
        made = super().__new__(cls, delays)
        made.taken = []
        return made

    def __getitem__(self, index: Any) -> Any:
        value = super().__getitem__(index)
        self.taken.append(value)
        return value


def test_a_watcher_flooding_at_every_start_is_restarted_ever_more_slowly(
    live: Callable[..., Live], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container whose watcher floods every time it starts, its header and the flood
    read at once: each start costs one summary and one `watch_stopped`, no run (the header
    of a watcher over its budget does not count), and the restarts back off."""
    delays = WaitsTaken((0.05, 0.1, 0.2, 60.0))
    monkeypatch.setattr(forge_syncd.live.watch, "RESTART_DELAYS_S", delays)
    box = live(remote=FakeRemote(watch_output=bad_records(MAX_RECORDS + 1))).start(
        established=False
    )
    wait_until(lambda: len(delays.taken) == 4, 30, "four restart delays")
    assert delays.taken == [0.05, 0.1, 0.2, 60.0]  # the fourth waits a minute
    assert box.remote.watchers == 4
    assert box.reconciles == 0 and box.runs() == 0
    assert box.runner.watch_state == "polling"
    assert len(logged(tmp_path, PROBLEM_EVENTS)) == 4
    assert len(logged(tmp_path, {"watch_stopped"})) == 4


# --- folders --------------------------------------------------------------------------


def test_a_change_outside_the_folders_is_never_fetched_nor_wakes_a_run(
    live: Callable[..., Live], tmp_path: Path
) -> None:
    """With `folders: [txt2img-images]`, a watcher reporting a file elsewhere under the
    root (which exists there) starts no run and the file is never fetched; a file the
    include patterns leave out starts no run either; a file in the folder lands."""
    box = live(folders=("txt2img-images",)).start()
    box.remote.write(b"elsewhere/out.png", b"out", OLD)
    box.remote.write(b"txt2img-images-evil/out.png", b"evil", OLD)
    box.remote.write(b"txt2img-images/notes.log", b"not included", OLD)
    box.watcher.feed(
        wfile(b"./elsewhere/out.png", b"3", b"%d" % OLD)
        + wfile(b"./txt2img-images-evil/out.png", b"4", b"%d" % OLD)
        + wfile(b"./txt2img-images/notes.log", b"12", b"%d" % OLD)
    )
    time.sleep(0.5)
    assert box.runs() == 0
    box.remote.written(b"txt2img-images/in.png", b"in", OLD)
    wait_until(lambda: box.has(b"txt2img-images/in.png", b"in"), 10, "in.png")
    assert box.remote.fetched == [b"txt2img-images/in.png"] and box.runs() == 1
    summary = logged(tmp_path, {"watch_problems"})
    assert summary and summary[0]["reasons"] == {"outside the synced folders": 2}


def test_a_live_run_given_files_outside_the_folders_fetches_none_of_them(
    live: Callable[..., Live],
) -> None:
    """The run itself (not only the watcher thread) keeps to `folders`: handed a file
    outside them, it fetches nothing and records nothing."""
    box = live(folders=("txt2img-images",))
    box.remote.write(b"elsewhere/out.png", b"out", OLD)
    box.remote.write(b"txt2img-images/in.png", b"in", OLD)
    outside = RemoteFile(b"elsewhere/out.png", 3, OLD * NS)
    inside = RemoteFile(b"txt2img-images/in.png", 2, OLD * NS)
    outcome = box.runner.run("sync", changed=[outside, inside])
    assert outcome is not None and outcome.files == 1
    assert box.remote.fetched == [b"txt2img-images/in.png"]
    assert set(box.manifest.files.records("box")) == {b"txt2img-images/in.png"}
