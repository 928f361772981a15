"""Live mode's push (issue #30): the python3 watcher sends a small completed file's bytes
right behind its record. How the records are read (`transports/shell/watch.py`), what the
transport keeps (`transports/pushed.py`), how a burst of pushed files ends
(`live/burst.py`), and the watcher script itself, run by sh on this machine."""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from forge_syncd.live.burst import DEBOUNCE_S, QUICK_S, Burst
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, RemoteFile, WatchEvent
from forge_syncd.transports.pushed import PushedFiles
from forge_syncd.transports.shell.watch import (
    PUSH_MAX,
    WatchOutput,
    parse_records,
    watcher_script,
)

MTIME = b"1700000000.250000000"
MTIME_NS = 1_700_000_000_250_000_000


def pushed(path: bytes, data: bytes, read_after: int = MTIME_NS + 10**9) -> bytes:
    """One `b` record and its bytes, as the python3 watcher prints them."""
    return b"b\0%d\0%d\0%s\0./%s\0" % (read_after, len(data), MTIME, path) + data


def test_a_pushed_file_is_a_written_record_with_its_bytes() -> None:
    """A `b` record gives a WRITTEN file with the bytes and the clock read before them; the
    records around it still parse (the bytes, NULs and all, are never read as records)."""
    data = b"\0k\0\0\0\0\0" + os.urandom(1000)  # looks like a record inside: must not be one
    out = b"h\0python3\0\0\0\0" + pushed(b"a.png", data) + b"k\0\0\0\0\0"
    records, used, problems = parse_records(out)
    assert problems == [] and used == len(out)
    assert [r.event for r in records] == [WatchEvent.STARTED, WatchEvent.WRITTEN, WatchEvent.ALIVE]
    written = records[1]
    assert written.file == RemoteFile(b"a.png", len(data), MTIME_NS)
    assert written.content == data and written.read_after_ns == MTIME_NS + 10**9


def test_a_pushed_file_split_over_reads_waits_for_its_last_byte() -> None:
    """Bytes arriving in pieces: no record until the last piece; then the bytes go to the
    store, the record says `pushed`, and they do not count against the watcher's budget."""
    store = PushedFiles()
    feed = WatchOutput(30.0, store, PUSH_MAX)
    data = os.urandom(300_000)
    wire = pushed(b"d/b.png", data) + b"k\0\0\0\0\0"
    got = []
    for at in range(0, len(wire), 65536):
        piece = wire[at : at + 65536]
        feed.received += len(piece)
        records, problems = feed.take(piece)
        assert problems == []
        got.extend(records)
    assert [r.event for r in got] == [WatchEvent.WRITTEN, WatchEvent.ALIVE]
    assert got[0].pushed and got[0].content is None  # the bytes are in the store only
    assert len(store) == 1 and store.total == len(data)
    assert feed.received == len(wire) - len(data)
    assert not feed.pending


def test_a_push_larger_than_allowed_is_refused_and_the_stream_goes_on() -> None:
    """A `b` record claiming more than `push_max` bytes is a problem, never a wait for
    gigabytes; records after its bytes are found again."""
    big = b"x" * 2000  # bytes that hold no record
    out = pushed(b"a.png", big) + b"k\0\0\0\0\0"
    records, used, problems = parse_records(out, push_max=1000)
    assert "malformed pushed file" in problems
    assert [r.event for r in records] == [WatchEvent.ALIVE] and used == len(out)
    assert all(r.content is None for r in records)


def test_a_pushed_file_with_an_unsafe_name_is_refused_and_its_bytes_dropped() -> None:
    """The name of a pushed file is checked like a listing's: `../x` is refused and its
    bytes never reach the store."""
    store = PushedFiles()
    feed = WatchOutput(30.0, store, PUSH_MAX)
    records, _ = feed.take(pushed(b"../escape.png", b"x" * 10))
    assert [r.event for r in records] == [WatchEvent.REFUSED]
    assert len(store) == 0


def test_a_malformed_clock_field_is_a_problem() -> None:
    """The clock before the read must be digits (a hostile watcher's text is not parsed)."""
    out = b"b\0soon\0" + b"3\0" + MTIME + b"\0./a.png\0abc"
    records, _, problems = parse_records(out)
    assert "malformed pushed file" in problems
    assert not any(r.content for r in records)


class Calls:
    def __init__(self) -> None:
        self.fetched: list[Fetched] = []
        self.started: list[FetchItem] = []
        self.bytes = 0

    def callbacks(self) -> FetchCallbacks:
        return FetchCallbacks(
            self.fetched.append,
            lambda n: setattr(self, "bytes", self.bytes + n),
            self.started.append,
        )


def test_land_writes_a_pushed_file_as_a_fetch_would(tmp_path: Path) -> None:
    """A planned file whose bytes were pushed (same path, size, mtime) is written to a
    temporary file beside its target, hashed, and handed on; it is used once."""
    store = PushedFiles()
    data = os.urandom(5000)
    remote = RemoteFile(b"a.png", len(data), MTIME_NS)
    store.put(remote, data, MTIME_NS + 10**9)
    target = os.fsencode(tmp_path / "a.png")
    calls = Calls()
    rest = store.land([FetchItem(remote, target)], calls.callbacks())
    assert rest == []
    (fetched,) = calls.fetched
    assert fetched.error is None and fetched.temp is not None and not fetched.racy
    assert os.path.dirname(fetched.temp) == os.fsencode(tmp_path)
    assert Path(os.fsdecode(fetched.temp)).read_bytes() == data
    assert fetched.sha256 == hashlib.sha256(data).hexdigest() and fetched.nbytes == len(data)
    assert calls.bytes == len(data) and len(calls.started) == 1
    assert not (tmp_path / "a.png").exists()  # the commit renames it into place, not us
    again = store.land([FetchItem(remote, target)], Calls().callbacks())
    assert again == [FetchItem(remote, target)]


def test_land_fetches_a_file_whose_size_or_mtime_is_not_the_pushed_one(tmp_path: Path) -> None:
    """Pushed bytes of another version of the file (the plan saw another size or mtime)
    are never used: the file is fetched."""
    store = PushedFiles()
    store.put(RemoteFile(b"a.png", 3, MTIME_NS), b"old", MTIME_NS + 10**9)
    newer = FetchItem(RemoteFile(b"a.png", 3, MTIME_NS + 1), os.fsencode(tmp_path / "a.png"))
    calls = Calls()
    assert store.land([newer], calls.callbacks()) == [newer]
    assert calls.fetched == [] and not list(tmp_path.glob("*.part"))


def test_a_push_read_within_a_tick_of_its_mtime_is_racy(tmp_path: Path) -> None:
    """The racy-copy rule applies to pushed bytes: read less than a clock tick after the
    mtime, the copy is kept but marked to be checked again."""
    store = PushedFiles()
    remote = RemoteFile(b"a.png", 3, MTIME_NS)
    store.put(remote, b"abc", MTIME_NS + 5_000_000)  # read 5 ms after the mtime
    calls = Calls()
    store.land([FetchItem(remote, os.fsencode(tmp_path / "a.png"))], calls.callbacks())
    assert calls.fetched[0].racy


def test_the_store_keeps_at_most_its_size_and_drops_the_oldest() -> None:
    """Memory is bounded: past `max_total` bytes the oldest pushes are dropped (fetched
    later as usual); a newer push of a path replaces the older one."""
    store = PushedFiles(max_total=10_000)
    for index in range(5):
        store.put(RemoteFile(b"f%d" % index, 4000, MTIME_NS), b"x" * 4000, 0)
    assert store.total <= 10_000 and len(store) == 2
    store.put(RemoteFile(b"f4", 10, MTIME_NS), b"y" * 10, 0)
    assert store.total == 4010


def test_an_old_push_is_not_used(tmp_path: Path) -> None:
    """Bytes held longer than `max_age_s` are not used (fetched instead)."""
    store = PushedFiles(max_age_s=0.0)
    remote = RemoteFile(b"a.png", 3, MTIME_NS)
    store.put(remote, b"abc", MTIME_NS + 10**9)
    time.sleep(0.01)
    item = FetchItem(remote, os.fsencode(tmp_path / "a.png"))
    assert store.land([item], Calls().callbacks()) == [item]


def test_a_burst_of_pushed_files_ends_sooner_unless_a_fetch_is_needed() -> None:
    """A burst of only pushed files ends QUICK_S after its latest record; one that also has
    a file to fetch waits the usual DEBOUNCE_S."""
    burst = Burst()
    burst.noted(100.0, pushed=True)
    assert not burst.over(100.0) and burst.over(100.0 + QUICK_S + 1e-6)
    burst.reset()
    burst.noted(100.0, pushed=True)
    burst.noted(100.001, pushed=False)
    assert not burst.over(100.001 + QUICK_S) and burst.over(100.001 + DEBOUNCE_S + 1e-6)


def test_the_python3_watcher_pushes_a_closed_file(tmp_path: Path) -> None:
    """The watcher script, run by sh here (python3 first when pushing): a file written and
    closed comes as a `b` record with its exact bytes and a clock at least a tick after its
    mtime (so the copy is not racy); a file larger than the limit comes as a plain `w`."""
    root = tmp_path / "root"
    root.mkdir()
    script = watcher_script(str(root), (), 30.0, push_max=100_000)
    proc = subprocess.Popen(
        ["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    feed = WatchOutput(30.0, PushedFiles(), 100_000)
    got: list = []

    def read_until(done, timeout: float = 30.0) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, got
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                records, problems = feed.take(os.read(proc.stdout.fileno(), 1 << 20))
                assert problems == []
                got.extend(records)

    try:
        read_until(lambda: feed.backend == "python3")
        small, large = os.urandom(50_000), os.urandom(200_000)
        (root / "small.png").write_bytes(small)
        (root / "large.png").write_bytes(large)
        read_until(lambda: sum(r.event is WatchEvent.WRITTEN for r in got) >= 2)
    finally:
        proc.stdin.close()
        proc.wait(10)
    written = {r.file.path: r for r in got if r.event is WatchEvent.WRITTEN and r.file}
    assert written[b"small.png"].pushed and not written[b"large.png"].pushed
    assert feed.pushed is not None
    calls = Calls()
    remote = written[b"small.png"].file
    assert remote is not None
    left = feed.pushed.land(  # type: ignore[attr-defined]
        [FetchItem(remote, os.fsencode(tmp_path / "small.png"))], calls.callbacks()
    )
    assert left == [] and not calls.fetched[0].racy
    assert calls.fetched[0].sha256 == hashlib.sha256(small).hexdigest()


class NoConnections:
    """Extra connections that must not be opened."""

    def open_one(self, rtt_s: float, share: int) -> None:
        raise AssertionError("a connection was opened for pushed files")


def test_an_extra_connection_lands_pushed_files_without_fetching_them(tmp_path: Path) -> None:
    """A pushed file dealt to one of several connections (`sync.connections`) is landed from
    the store like on the kept-open one: no connection is opened, nothing is fetched twice."""
    from forge_syncd.remote.types import TransferMethod
    from forge_syncd.transports.ssh.lanes import ExtraLane

    store = PushedFiles()
    data = os.urandom(3000)
    remote = RemoteFile(b"a.png", len(data), MTIME_NS)
    store.put(remote, data, MTIME_NS + 10**9)
    lane = ExtraLane(NoConnections(), None, lambda: None, 2, store)  # type: ignore[arg-type]
    calls = Calls()
    item = FetchItem(remote, os.fsencode(tmp_path / "a.png"))
    report = lane.fetch([item], calls.callbacks(), threading.Event())
    assert report.transfer == TransferMethod.PUSH
    (fetched,) = calls.fetched
    assert fetched.sha256 == hashlib.sha256(data).hexdigest() and lane.connection is None
