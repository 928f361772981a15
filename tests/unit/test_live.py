"""Live mode in the unit tier (no SSH): when a reported file is ready (`Changes`), what
watcher output becomes (`parse_records`, hostile bytes included), the watcher script's
quoting, and `LiveWatch` driven through a fake container by a real runner and manifest:
incremental runs, bursts, a dying or failing watcher, pause, overflow, the settling
handoff and retire."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import forge_syncd.live.watch
from forge_syncd.config.model import ContainerConfig, SyncConfig
from forge_syncd.library.manifest import Manifest
from forge_syncd.live.changes import Changes
from forge_syncd.mtimes import MAX_MTIME_S, MTIME_OUT_OF_RANGE, NS
from forge_syncd.mtimes import in_range as mtime_in_range
from forge_syncd.paths import unsafe_reason
from forge_syncd.remote.types import MAX_SIZE, RemoteFile, WatchEvent, WatchRecord
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.transports.shell.watch import (
    MAX_MESSAGE,
    MAX_RECORD,
    parse_records,
    watcher_script,
)
from tests.support.daemon import wait_until
from tests.support.fake_remote import FakeRemote, FakeWatch

OLD = 1_700_000_000
NOW_NS = (OLD + 1000) * NS
SETTLE_NS = 5 * NS


def rf(path: bytes, size: int = 1, mtime_s: float = OLD) -> RemoteFile:
    return RemoteFile(path, size, int(mtime_s * NS))


# --- Changes: when a reported file is ready ------------------------------------------------


def test_a_written_file_is_ready_at_once_and_handed_once() -> None:
    """A `w` file (closed after writing) is ready at the next take, even with a fresh
    mtime; the take forgets it."""
    changes = Changes()
    fresh = RemoteFile(b"a.png", 5, NOW_NS)
    changes.written(fresh)
    assert changes
    assert changes.take(NOW_NS, SETTLE_NS).files == [fresh]
    assert not changes and changes.take(NOW_NS, SETTLE_NS).files == []


def test_a_seen_file_needs_two_equal_looks() -> None:
    """An `s` file with a fresh mtime is not ready after one look, and is after a second
    look with the same size and mtime."""
    changes = Changes()
    fresh = RemoteFile(b"a.png", 5, NOW_NS - NS)
    changes.looked(fresh)
    assert changes.take(NOW_NS, SETTLE_NS).files == []
    assert changes  # still waiting
    changes.looked(fresh)
    assert changes.take(NOW_NS, SETTLE_NS).files == [fresh]


def test_a_seen_file_older_than_settle_is_ready_after_one_look() -> None:
    """One look is enough for a file whose mtime is older than `settle`; at exactly the
    limit it is ready, a nanosecond later it is not."""
    changes = Changes()
    edge = RemoteFile(b"edge.png", 1, NOW_NS - SETTLE_NS)
    young = RemoteFile(b"young.png", 1, NOW_NS - SETTLE_NS + 1)
    changes.looked(edge)
    changes.looked(young)
    assert changes.take(NOW_NS, SETTLE_NS).files == [edge]
    assert changes.take(NOW_NS + 1, SETTLE_NS).files == [young]


def test_a_changed_second_look_restarts_the_wait() -> None:
    """A second look that sees another size (or mtime) is a first look again: two more
    equal looks are needed. A `w` file seen changed afterwards waits again too."""
    changes = Changes()
    first = RemoteFile(b"a.png", 5, NOW_NS)
    grown = RemoteFile(b"a.png", 9, NOW_NS)
    touched = RemoteFile(b"a.png", 9, NOW_NS + 1)
    changes.looked(first)
    changes.looked(grown)
    assert changes.take(NOW_NS, SETTLE_NS).files == []
    changes.looked(touched)
    assert changes.take(NOW_NS, SETTLE_NS).files == []
    changes.looked(touched)
    assert changes.take(NOW_NS, SETTLE_NS).files == [touched]
    changes.written(RemoteFile(b"b.png", 1, NOW_NS))
    changes.looked(RemoteFile(b"b.png", 2, NOW_NS))  # still being written after all
    assert changes.take(NOW_NS, SETTLE_NS).files == []


def test_a_deleted_file_is_dropped() -> None:
    """A file deleted before its take is forgotten, whether complete or seen once."""
    changes = Changes()
    changes.written(rf(b"w.png"))
    changes.looked(RemoteFile(b"s.png", 1, NOW_NS))
    changes.deleted(b"w.png")
    changes.deleted(b"s.png")
    assert not changes
    assert changes.take(NOW_NS + SETTLE_NS, SETTLE_NS).files == []


def test_overflow_past_max_files_asks_for_a_full_run_and_clears() -> None:
    """Past `max_files` pending names the take says `full` (with no files) and forgets
    everything; a new version of a name already pending does not count as another."""
    changes = Changes(max_files=3)
    for name in (b"a", b"b", b"c"):
        changes.written(rf(name))
    changes.written(rf(b"c", size=2))  # replaces: still 3
    assert not changes.overflowed
    changes.looked(RemoteFile(b"d", 1, NOW_NS))
    ready = changes.take(NOW_NS, SETTLE_NS)
    assert ready.full and ready.files == []
    assert not changes and not changes.complete and not changes.seen
    after = changes.take(NOW_NS, SETTLE_NS)
    assert not after.full and after.files == []


def test_an_explicit_overflow_asks_for_one_full_run() -> None:
    """`overflow()` (inotify lost events, the watcher restarted) makes the next take a full
    one, once."""
    changes = Changes()
    changes.written(rf(b"a"))
    changes.overflow()
    assert changes.take(NOW_NS, SETTLE_NS).full
    assert not changes.take(NOW_NS, SETTLE_NS).full


def test_a_handed_file_seen_unchanged_again_is_not_handed_again() -> None:
    """The find detector reports a change in two looks (or more): a file handed on and then
    seen unchanged is nothing new; seen changed, it is handed again."""
    changes = Changes()
    old = rf(b"a.png")
    changes.written(old)
    assert changes.take(NOW_NS, SETTLE_NS).files == [old]
    changes.looked(old)
    changes.looked(old)
    assert not changes
    assert changes.take(NOW_NS, SETTLE_NS).files == []
    newer = rf(b"a.png", size=2)
    changes.looked(newer)  # old mtime: ready by age
    assert changes.take(NOW_NS, SETTLE_NS).files == [newer]


def test_next_settled_ns_is_the_first_seen_file_plus_settle() -> None:
    """`next_settled_ns`: None without a seen-once file (complete ones do not count), else
    the earliest seen mtime plus settle."""
    changes = Changes()
    assert changes.next_settled_ns(SETTLE_NS) is None
    changes.written(RemoteFile(b"w", 1, NOW_NS - 100 * NS))
    assert changes.next_settled_ns(SETTLE_NS) is None
    changes.looked(RemoteFile(b"late", 1, NOW_NS))
    changes.looked(RemoteFile(b"early", 1, NOW_NS - NS))
    assert changes.next_settled_ns(SETTLE_NS) == NOW_NS - NS + SETTLE_NS
    changes.deleted(b"early")
    assert changes.next_settled_ns(SETTLE_NS) == NOW_NS + SETTLE_NS


def operations(names: list[bytes]) -> st.SearchStrategy[list[tuple[str, object]]]:
    """Sequences of reports and takes over `names`, with few versions of each (sizes 0-1,
    mtimes 3 s apart), so that the same file is reported again and again."""
    name = st.sampled_from(names)
    mtime = st.sampled_from([-3, 0, 3]).map(lambda s: NOW_NS + s * NS)
    version = st.builds(RemoteFile, name, st.integers(0, 1), mtime)
    return st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["looked", "looked", "written"]), version),
            st.tuples(st.just("take"), st.integers(-3, 6)),
            st.tuples(st.just("deleted"), name),
            st.tuples(st.just("overflow"), st.none()),
        ),
        max_size=60,
    )


def apply(changes: Changes, op: str, arg: object) -> list[RemoteFile] | None:
    """Apply one operation; return what a take handed on (None for the others)."""
    if op == "written":
        assert isinstance(arg, RemoteFile)
        changes.written(arg)
    elif op == "looked":
        assert isinstance(arg, RemoteFile)
        changes.looked(arg)
    elif op == "deleted":
        assert isinstance(arg, bytes)
        changes.deleted(arg)
    elif op == "overflow":
        changes.overflow()
    else:
        assert isinstance(arg, int)
        ready = changes.take(NOW_NS + arg * NS, 2 * NS)
        assert not (ready.full and ready.files)
        return ready.files
    return None


@settings(max_examples=300, deadline=None)
@given(operations([b"a", b"b", b"c", b"d", b"e", b"f"]), st.integers(1, 4))
def test_pending_files_never_exceed_max_files(ops: list[tuple[str, object]], limit: int) -> None:
    """For any sequence of reports and takes, at most `max_files` names are pending (and
    remembered as handed), and a take hands each name at most once."""
    changes = Changes(max_files=limit)
    for op, arg in ops:
        files = apply(changes, op, arg)
        assert len(changes.complete) + len(changes.seen) <= limit
        assert len(changes.handed) <= limit
        if files is not None:
            assert len({f.path for f in files}) == len(files)


@settings(max_examples=300, deadline=None)
@given(operations([b"a", b"b"]))
def test_take_never_hands_the_same_unchanged_file_twice(ops: list[tuple[str, object]]) -> None:
    """For any sequence of reports and takes, a take hands on only reported files, and a
    file handed on is not handed on again unchanged unless a `w` reported it again."""
    changes = Changes()
    reported: set[RemoteFile] = set()
    last: dict[bytes, RemoteFile] = {}
    rewritten: set[bytes] = set()
    for op, arg in ops:
        if isinstance(arg, RemoteFile):
            reported.add(arg)
            if op == "written":
                rewritten.add(arg.path)
        for remote in apply(changes, op, arg) or []:
            assert remote in reported
            assert remote.path in rewritten or last.get(remote.path) != remote
            last[remote.path] = remote
            rewritten.discard(remote.path)


# --- parse_records: watcher output is untrusted ---------------------------------------------


def rec(
    event: bytes, kind: bytes = b"", size: bytes = b"", mtime: bytes = b"", path: bytes = b""
) -> bytes:
    return b"\0".join((event, kind, size, mtime, path)) + b"\0"


def wfile(path: bytes, size: bytes = b"5", mtime: bytes = b"1700000000.5000000000") -> bytes:
    return rec(b"w", b"f", size, mtime, path)


GOOD = (
    rec(b"h", b"python3")
    + wfile(b"./out/a.png")
    + rec(b"s", b"f", b"0", b"1700000001", b"./b c.png")
    + rec(b"d", b"", b"", b"", b"./gone.png")
    + rec(b"o")
    + rec(b"k")
    + rec(b"x", b"inotify_add_watch: No space left on device")
)


def test_good_records_of_each_event_parse() -> None:
    """Every event parses into its record: header and failure messages, written and seen
    files (path relative, mtime in ns), a deletion, overflow and keepalive."""
    records, used, problems = parse_records(GOOD)
    assert used == len(GOOD) and problems == []
    assert records == [
        WatchRecord(WatchEvent.STARTED, message="python3"),
        WatchRecord(
            WatchEvent.WRITTEN, file=RemoteFile(b"out/a.png", 5, 1_700_000_000_500_000_000)
        ),
        WatchRecord(WatchEvent.SEEN, file=RemoteFile(b"b c.png", 0, 1_700_000_001_000_000_000)),
        WatchRecord(WatchEvent.DELETED, path=b"gone.png"),
        WatchRecord(WatchEvent.OVERFLOW),
        WatchRecord(WatchEvent.ALIVE),
        WatchRecord(WatchEvent.FAILED, message="inotify_add_watch: No space left on device"),
    ]


UNSAFE = [
    b"./../etc/passwd",
    b"./a/../../b.png",
    b"./.versions/a.png",
    b"./a//b.png",
    b"./a/./b.png",
    b".//etc/passwd",
    b"./sub/.fs-0123456789abcdef.part",
    b"./" + b"x" * 256 + b".png",
    b"./",
]


@pytest.mark.parametrize("raw", UNSAFE)
@pytest.mark.parametrize("event", [b"w", b"s"])
def test_an_unsafe_name_becomes_a_skipped_record(event: bytes, raw: bytes) -> None:
    """A `w` or `s` name that a listing would refuse becomes a REFUSED record with
    `unsafe_reason`'s reason, never a file."""
    records, used, problems = parse_records(rec(event, b"f", b"1", b"1700000000", raw))
    assert problems == [] and used > 0
    expected = unsafe_reason(raw[2:])
    assert expected is not None
    assert records == [WatchRecord(WatchEvent.REFUSED, path=raw[2:], message=expected)]


@pytest.mark.parametrize("raw", [b"/etc/passwd", b"../x.png", b"a.png", b""])
def test_a_name_outside_the_root_is_skipped(raw: bytes) -> None:
    """A `w` name not starting with `./` (absolute, `..`, bare) is skipped as outside the
    root."""
    records, _, _ = parse_records(wfile(raw))
    assert [(r.event, r.path, r.message) for r in records] == [
        (WatchEvent.REFUSED, raw, "name outside the root")
    ]


@pytest.mark.parametrize("raw", [b"./../etc/passwd", b"./.versions/a.png", b".//abs"])
def test_a_deleted_record_with_an_unsafe_name_is_not_passed_on(raw: bytes) -> None:
    """A `d` record whose name a listing would refuse is skipped or dropped, like `w`/`s`."""
    records, _, _ = parse_records(rec(b"d", b"", b"", b"", raw))
    assert all(r.event is not WatchEvent.DELETED for r in records)


@pytest.mark.parametrize(
    ("size", "mtime", "reason"),
    [
        (b"1" * 30, b"1700000000", "malformed listing record"),
        (b"1" * 21, b"1700000000", "malformed listing record"),
        (b"%d" % (MAX_SIZE + 1), b"1700000000", "too_large"),
        (b"-1", b"1700000000", "malformed listing record"),
        (b"5", b"999999999999", MTIME_OUT_OF_RANGE),  # year 33658
        (b"5", b"9" * 20, MTIME_OUT_OF_RANGE),
        (b"5", b"9" * 21, "malformed listing record"),
        (b"5", b"-99999999999", MTIME_OUT_OF_RANGE),  # before year 1
        (b"5", b"1700000000.1e9", "malformed listing record"),
        (b"5", b"1700000000." + b"1" * 13, "malformed listing record"),
        (b"\xd9\xa3", b"1700000000", "malformed listing record"),  # a non-ASCII digit
    ],
)
def test_huge_or_malformed_numbers_are_refused(size: bytes, mtime: bytes, reason: str) -> None:
    """Sizes past 64 bits (30 digits), mtimes past 2262 or before 1677 and non-numbers are
    skipped with a reason, not turned into files."""
    records, _, problems = parse_records(wfile(b"./a.png", size, mtime))
    assert problems == []
    assert records == [WatchRecord(WatchEvent.REFUSED, path=b"a.png", message=reason)]


def test_messages_are_truncated_and_made_printable() -> None:
    """An `h`/`x` message is cut to MAX_MESSAGE and its non-printable characters (escape
    sequences, newlines, invalid UTF-8) are replaced."""
    hostile = b"\x1b[31mred\n\r\t\x00"[:-1] + b"\xff\xfe" + b"y" * 1000
    records, _, _ = parse_records(rec(b"x", hostile) + rec(b"h", b"\x07bell"))
    message = records[0].message
    assert len(message) <= MAX_MESSAGE and message.isprintable()
    assert message.startswith("?[31mred???") and "\x1b" not in message
    assert records[1] == WatchRecord(WatchEvent.STARTED, message="?bell")


def test_a_partial_record_is_left_for_the_next_read() -> None:
    """A record cut anywhere is left (`used` stops before it) and parses whole once the
    rest arrives."""
    whole = wfile(b"./a.png") + wfile(b"./b.png")
    for cut in range(len(wfile(b"./a.png")) + 1, len(whole)):
        records, used, problems = parse_records(whole[:cut])
        assert used == len(wfile(b"./a.png")) < cut and problems == []
        assert [r.file.path for r in records if r.file] == [b"a.png"]
        rest, used_rest, _ = parse_records(whole[used:])
        assert used_rest == len(whole) - used
        assert [r.file.path for r in rest if r.file] == [b"b.png"]


def test_an_overlong_unterminated_tail_is_dropped_with_a_problem() -> None:
    """An unfinished record longer than MAX_RECORD is not kept for ever: it is consumed
    with a problem reported; one just under the limit is kept."""
    kept = b"w\0f\0" + b"a" * (MAX_RECORD - 4)
    records, used, problems = parse_records(GOOD + kept)
    assert used == len(GOOD) and problems == [] and len(records) == 7
    long = kept + b"a"
    records, used, problems = parse_records(GOOD + long)
    assert used == len(GOOD + long) and len(records) == 7
    assert problems == ["watcher record too long"]


def test_garbage_between_records_is_skipped_with_a_problem() -> None:
    """Bytes that are no record (an uppercase event, stray text) are reported and skipped;
    the records around them still parse."""
    data = wfile(b"./a.png") + b"junk" + rec(b"Q") + wfile(b"./b.png") + rec(b"z")
    records, used, problems = parse_records(data)
    assert used == len(data)
    assert [r.file.path for r in records if r.file] == [b"a.png", b"b.png"]
    assert problems == ["unparsable watcher output", "unknown watcher record"]


def check_bounded(data: bytes) -> None:
    """Parse `data`; assert nothing raised and everything returned is bounded and safe."""
    records, used, problems = parse_records(data)
    assert 0 <= used <= len(data) and len(data) - used <= MAX_RECORD
    assert len(records) <= len(data) // 6 and len(problems) <= len(data) // 6 + 1
    for record in records:
        assert isinstance(record.event, WatchEvent)
        if record.event in (WatchEvent.WRITTEN, WatchEvent.SEEN):
            assert record.file is not None
            assert unsafe_reason(record.file.path) is None
            assert 0 <= record.file.size <= MAX_SIZE and mtime_in_range(record.file.mtime_ns)
        elif record.event in (WatchEvent.STARTED, WatchEvent.FAILED):
            assert len(record.message) <= MAX_MESSAGE and record.message.isprintable()
        elif record.event is WatchEvent.REFUSED:
            assert record.message and record.file is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3 * MAX_RECORD))
def test_arbitrary_bytes_never_raise_and_stay_bounded(data: bytes) -> None:
    """Any bytes at all: no exception, the unparsed tail is at most MAX_RECORD, files are
    safe names with sane numbers, messages bounded and printable."""
    check_bounded(data)


BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))
KINDS = st.one_of(st.sampled_from([b"f", b"f", b"l", b"p", b"D", b""]), BYTES)
EDGES = [MAX_SIZE, MAX_SIZE + 1, MAX_MTIME_S, MAX_MTIME_S + 1, -MAX_MTIME_S - 1, 10**20]
SIZES = st.one_of(
    st.integers(-10, 10**30).map(lambda n: b"%d" % n),
    st.sampled_from(EDGES).map(lambda n: b"%d" % n),
    BYTES,
)
MTIMES = st.one_of(
    st.tuples(
        st.one_of(
            st.integers(-MAX_MTIME_S - 10, MAX_MTIME_S + 10),
            st.integers(-(10**21), 10**21),
            st.sampled_from(EDGES),
        ),
        st.sampled_from([b"", b".", b".5", b".1234567890"]),
    ).map(lambda t: b"%d%s" % t),
    BYTES,
)
PATHS = st.one_of(
    st.sampled_from([*UNSAFE, b"./a.png", b"./sub/b.png", b"/abs", b"./\xff\xfe.png"]),
    st.binary(max_size=60).map(lambda b: b"./" + b.replace(b"\0", b"")),
    st.lists(st.sampled_from([b"a", b"..", b".", b"", b".versions", b"x" * 256])).map(
        lambda parts: b"./" + b"/".join(parts)
    ),
)
EVENTS = st.sampled_from([b"w", b"s", b"d", b"h", b"x", b"o", b"k", b"q"])
FILE_EVENTS = st.sampled_from([b"w", b"s"])
GOOD_MTIME = b"1700000000.5"
# A file record with one hostile field (so the others do not hide it), or all hostile.
HOSTILE_RECORD = st.one_of(
    st.builds(lambda e, k: rec(e, k, b"5", GOOD_MTIME, b"./a.png"), FILE_EVENTS, KINDS),
    st.builds(lambda e, n: rec(e, b"f", n, GOOD_MTIME, b"./a.png"), FILE_EVENTS, SIZES),
    st.builds(lambda e, t: rec(e, b"f", b"5", t, b"./a.png"), FILE_EVENTS, MTIMES),
    st.builds(lambda e, p: rec(e, b"f", b"5", GOOD_MTIME, p), FILE_EVENTS, PATHS),
    st.builds(rec, EVENTS, KINDS, SIZES, MTIMES, PATHS),
)
RECORDS = st.lists(HOSTILE_RECORD, max_size=12).map(b"".join)
MUTATIONS = st.lists(
    st.tuples(
        st.floats(0, 1),
        st.sampled_from(["insert", "delete", "replace"]),
        st.binary(min_size=1, max_size=8),
    ),
    max_size=4,
)


def mutate(data: bytes, mutations: list[tuple[float, str, bytes]]) -> bytes:
    for where, how, chunk in mutations:
        at = int(where * len(data))
        if how == "insert":
            data = data[:at] + chunk + data[at:]
        elif how == "delete":
            data = data[:at] + data[at + len(chunk) :]
        else:
            data = data[:at] + chunk + data[at + len(chunk) :]
    return data


@settings(max_examples=500, deadline=None)
@given(RECORDS, MUTATIONS)
def test_mutated_records_never_raise_and_stay_bounded(
    data: bytes, mutations: list[tuple[float, str, bytes]]
) -> None:
    """Records with hostile fields (unsafe names, huge numbers, unknown events), then cut,
    spliced and overwritten: same guarantees as for arbitrary bytes."""
    check_bounded(mutate(data, mutations))


@settings(max_examples=200, deadline=None)
@given(RECORDS, st.floats(0, 1))
def test_records_cut_anywhere_parse_as_if_whole(data: bytes, where: float) -> None:
    """Output that arrives in two reads, cut at any byte, gives the same records as in one
    read (the unfinished part is carried over)."""
    cut = int(where * len(data))
    first, used, _ = parse_records(data[:cut])
    second, used_rest, _ = parse_records(data[used:])
    whole, used_whole, _ = parse_records(data)
    assert first + second == whole and used + used_rest == used_whole == len(data)


# --- watcher_script: quoting -----------------------------------------------------------------

HOSTILE_ROOT = 'it\'s a "root" $(touch PWNED) `touch PWNED2`;x'


def test_the_watcher_script_passes_sh_n() -> None:
    """The whole script, for a root and folders full of shell syntax, is valid sh."""
    for folders in ((), ("a b", "it's", "$(x)", "-n")):
        script = watcher_script(HOSTILE_ROOT, folders, 0.5)
        checked = subprocess.run(["/bin/sh", "-n"], input=script.encode(), capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_the_watcher_script_quotes_its_root_and_folders(tmp_path: Path) -> None:
    """The script's first lines, run by /bin/sh, enter the root with spaces and quotes and
    watch exactly the existing folders, running nothing named inside them."""
    root = tmp_path / HOSTILE_ROOT
    for name in ("a b", "it's", "$(touch PWNED3)"):
        (root / name).mkdir(parents=True)
    folders = ("a b", "it's", "missing", "$(touch PWNED3)")
    head = watcher_script(str(root), folders, 60).split("\n{\n")[0]
    probe = head + '\nprintf \'%s\\0\' "$PWD" "$@"\n'
    done = subprocess.run(
        ["/bin/sh", "-c", probe], cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(b"\0")[:-1] == [
        os.fsencode(root),
        b"./a b",
        b"./it's",
        b"./$(touch PWNED3)",
    ]
    assert sorted(p.name for p in tmp_path.rglob("PWNED*")) == []


# --- LiveWatch: a runner, a manifest and a fake container -----------------------------------


def container(
    settle_s: float = 0.0, watch: bool = True, folders: tuple[str, ...] = ()
) -> ContainerConfig:
    return ContainerConfig(
        name="box",
        kind="generic",
        host="fake",
        root="/out",
        folders=folders,
        sync=SyncConfig(settle_s=settle_s, watch=watch),
    )


class Live:
    """A container runner with live mode on, its fake container and its manifest."""

    def __init__(
        self,
        tmp: Path,
        settle_s: float = 0.0,
        watch: bool = True,
        folders: tuple[str, ...] = (),
        remote: FakeRemote | None = None,
    ) -> None:
        self.remote = remote or FakeRemote()
        self.media = tmp / "media"
        self.manifest = Manifest.open(tmp / "state")
        self.runner = ContainerRunner(
            container(settle_s, watch, folders),
            os.fsencode(self.media),
            self.manifest,
            remote=self.remote,
        )
        self.reconciles = 0

    def start(self, established: bool = True) -> Live:
        self.runner.start_watch(self._reconcile)
        if established:
            wait_until(lambda: self.runner.watch_state == "watching", 10, "the watcher")
        return self

    def _reconcile(self) -> None:
        self.reconciles += 1

    @property
    def watcher(self) -> FakeWatch:
        assert self.remote.watcher is not None
        return self.remote.watcher

    def has(self, name: bytes, data: bytes) -> bool:
        path = os.path.join(os.fsencode(self.media), b"box", name)
        return os.path.exists(path) and open(path, "rb").read() == data

    def runs(self) -> int:
        return len(self.manifest.runs.recent("box", limit=10_000))

    def close(self) -> None:
        self.runner.retire()
        if self.remote.watcher is not None:
            self.remote.watcher.end()  # wakes a read the fake's close() does not
        if self.runner.live is not None:
            self.runner.live.join(10)
        self.manifest.close()


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Live]]:
    """Make a `Live` (restarts after 0.05 s and up); all are retired at the end."""
    monkeypatch.setattr(forge_syncd.live.watch, "RESTART_DELAYS_S", (0.05, 0.05, 0.1, 0.1, 0.2))
    made: list[Live] = []

    def make(**options: object) -> Live:
        made.append(Live(tmp_path / str(len(made)), **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for one in made:
        one.close()


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "watch-box"]


def test_live_mode_off_starts_no_watcher(live: Callable[..., Live]) -> None:
    """With `sync.watch: false` no watcher is started and the state is `off`."""
    box = live(watch=False).start(established=False)
    assert box.runner.watch_state == "off" and box.runner.live is None
    assert "watch" not in box.remote.calls


def test_an_established_watcher_is_watching_and_reconciles_once(live: Callable[..., Live]) -> None:
    """Before the watcher says it is established the state is `polling`; after, it is
    `watching`, and one full run was queued (reconcile) for what came before."""
    box = live()
    assert box.runner.watch_state == "off"
    box.start()
    wait_until(lambda: box.reconciles >= 1, 10, "the reconcile")
    time.sleep(0.3)
    assert box.reconciles == 1 and box.remote.watchers == 1
    assert box.runner.watch_state == "watching"


def test_written_files_arrive_through_incremental_runs(live: Callable[..., Live]) -> None:
    """A written file reported by the watcher lands in the library with its bytes and mtime
    through a run that lists nothing; a later rewrite lands too."""
    box = live().start()
    box.remote.written(b"a.png", b"alpha", OLD)
    wait_until(lambda: box.has(b"a.png", b"alpha"), 10, "a.png")
    local = os.path.join(os.fsencode(box.media), b"box", b"a.png")
    assert os.stat(local).st_mtime_ns == OLD * NS
    box.remote.written(b"a.png", b"alpha, longer", OLD + 5)
    wait_until(lambda: box.has(b"a.png", b"alpha, longer"), 10, "a.png rewritten")
    assert "list" not in box.remote.calls and box.runs() >= 2
    assert set(box.manifest.files.records("box")) == {b"a.png"}


def test_a_burst_of_200_files_takes_few_runs(live: Callable[..., Live]) -> None:
    """200 files written in a burst (one every few ms) all land, in far fewer runs than
    files (the burst is debounced), none of them a listing."""
    box = live().start()
    files = {b"burst/%03d.png" % i: b"data %d" % i for i in range(200)}
    for path, data in files.items():  # a trickle over about half a second
        box.remote.written(path, data, OLD)
        time.sleep(0.0025)
    wait_until(lambda: all(box.has(p, d) for p, d in files.items()), 20, "the burst")
    assert 1 <= box.runs() <= 10
    assert "list" not in box.remote.calls


def test_a_dead_watcher_is_restarted_and_reconciles_again(live: Callable[..., Live]) -> None:
    """A watcher that dies makes the container `polling`; a new one is started after the
    restart delay, which makes it `watching` again and queues another full run; what the
    new watcher reports syncs."""
    box = live().start()
    assert box.runner.live is not None
    states: list[str] = []
    box.runner.live.on_state = states.append
    first = box.watcher
    first.end()
    wait_until(lambda: box.remote.watchers == 2 and box.runner.watch_state == "watching", 10)
    wait_until(lambda: box.reconciles == 2, 10, "the second reconcile")
    assert states == ["polling", "watching"] and first.closed
    assert box.watcher is not first and box.runner.live.restarts == 1
    box.remote.written(b"after.png", b"later", OLD)
    wait_until(lambda: box.has(b"after.png", b"later"), 10, "after.png")


def test_a_watcher_that_cannot_start_keeps_polling_and_retries(live: Callable[..., Live]) -> None:
    """While the watcher cannot start the container stays `polling`, tries again and
    again (no crash, no reconcile), and goes `watching` once it can."""
    box = live()
    box.remote.watch_error = "no watcher: no inotifywait, python3 or GNU find"
    box.start(established=False)
    wait_until(lambda: box.remote.calls.count("watch") >= 4, 10, "four tries")
    assert box.runner.watch_state == "polling" and box.reconciles == 0
    assert box.remote.watchers == 0
    box.remote.watch_error = None
    wait_until(lambda: box.reconciles == 1, 10, "the watcher at last")
    assert box.runner.watch_state == "watching"


def test_no_incremental_run_while_paused(live: Callable[..., Live]) -> None:
    """Reports that come while the container is paused start no run; they sync once it is
    resumed."""
    box = live().start()
    box.runner.paused = True
    box.remote.written(b"held.png", b"held", OLD)
    time.sleep(0.6)
    assert box.runs() == 0 and not box.has(b"held.png", b"held")
    box.runner.paused = False
    wait_until(lambda: box.has(b"held.png", b"held"), 10, "held.png")
    assert box.runs() == 1


def test_an_overflow_record_makes_a_full_run(live: Callable[..., Live]) -> None:
    """An `o` record (inotify lost events) makes a full run: the container is listed and
    a file nobody reported lands."""
    box = live().start()
    box.remote.write(b"unreported.png", b"quiet", OLD)
    assert "list" not in box.remote.calls
    box.watcher.push(WatchRecord(WatchEvent.OVERFLOW))
    wait_until(lambda: box.has(b"unreported.png", b"quiet"), 10, "unreported.png")
    assert box.remote.calls.count("list") == 1


def test_a_file_settling_in_a_full_run_is_synced_once_settled(live: Callable[..., Live]) -> None:
    """A full run that skips a file as still settling hands it to live mode, which syncs
    it once it is older than `settle`, without another listing."""
    box = live(settle_s=2.0).start()
    box.remote.write(b"fresh.png", b"new", int(time.time()) + 1)  # settling for 2-3 s
    outcome = box.runner.run("sync")
    assert outcome is not None and outcome.files == 0
    assert [f.path for f in outcome.sync.settling] == [b"fresh.png"]
    assert not box.has(b"fresh.png", b"new")
    wait_until(lambda: box.has(b"fresh.png", b"new"), 10, "fresh.png once settled")
    assert box.remote.calls.count("list") == 1 and box.runs() == 2


def test_a_file_two_full_runs_saw_unchanged_is_synced_without_waiting_for_settle(
    live: Callable[..., Live],
) -> None:
    """Two full runs that skipped the same file as settling, unchanged (a watcher that
    ended during the first run leaves its hand-off queued for the next one), make it
    complete: it syncs promptly, with no watcher record to start a burst (it used to
    wait for the next record or poll)."""
    box = live(settle_s=600.0).start()
    box.remote.write(b"fresh.png", b"new", int(time.time()))
    for _ in range(2):
        outcome = box.runner.run("sync")
        assert outcome is not None and outcome.files == 0
    wait_until(lambda: box.has(b"fresh.png", b"new"), 10, "fresh.png, seen twice unchanged")
    assert box.remote.calls.count("list") == 2


def test_retire_stops_the_thread_and_leaves_no_watcher(live: Callable[..., Live]) -> None:
    """retire() ends the watch thread (join returns), closes the watcher, starts no new
    one, and what is written afterwards is not synced."""
    box = live().start()
    assert len(watch_threads()) == 1
    box.runner.retire()
    assert box.runner.live is not None
    box.runner.live.join(5)
    assert watch_threads() == [] and box.watcher.closed
    assert box.runner.watch_state == "polling"
    box.watcher.push(WatchRecord(WatchEvent.WRITTEN, RemoteFile(b"late.png", 1, OLD * NS)))
    time.sleep(0.3)
    assert box.remote.watchers == 1 and box.runs() == 0


def test_retire_during_a_restart_delay_returns_promptly(
    live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runner retired while its watcher waits to be restarted (a delay of an hour) stops:
    its thread ends, which it could not do by waiting out the delay."""
    monkeypatch.setattr(forge_syncd.live.watch, "RESTART_DELAYS_S", (3600.0,))
    box = live()
    box.remote.watch_error = "cannot"
    box.start(established=False)
    wait_until(lambda: "watch" in box.remote.calls, 10, "the first try")
    box.runner.retire()
    assert box.runner.live is not None
    box.runner.live.join(30)
    assert watch_threads() == []


def counted_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Count every FakeWatch.read (its timeouts, in order)."""
    reads: list[float] = []
    original = FakeWatch.read

    def read(self: FakeWatch, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        reads.append(timeout)
        return original(self, timeout)

    monkeypatch.setattr(FakeWatch, "read", read)
    return reads


def test_a_burst_that_cancels_itself_does_not_spin(
    live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written and deleted at once (a temporary file) leaves nothing to sync; the
    watch thread then waits for output instead of polling it in a tight loop."""
    reads = counted_reads(monkeypatch)
    box = live().start()
    box.watcher.push(WatchRecord(WatchEvent.WRITTEN, RemoteFile(b"tmp.png", 1, OLD * NS)))
    box.watcher.push(WatchRecord(WatchEvent.DELETED, path=b"tmp.png"))
    time.sleep(0.3)
    before = len(reads)
    time.sleep(0.5)
    assert len(reads) - before < 20  # idle: about one read a second
    assert box.runs() == 0


def test_paused_with_pending_changes_does_not_spin(
    live: Callable[..., Live], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While paused with reports pending, the watch thread waits for output instead of
    polling it in a tight loop."""
    reads = counted_reads(monkeypatch)
    box = live().start()
    box.runner.paused = True
    box.remote.written(b"held.png", b"held", OLD)
    time.sleep(0.3)
    before = len(reads)
    time.sleep(0.5)
    assert len(reads) - before < 20
