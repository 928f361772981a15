"""What every `Transport` does, whatever reaches the container: each test runs once per
box of `conftest.BOXES` (the in-memory fake; SSH to a real sshd with its fast paths, and
with none of them; issue 27 adds docker and local). A transport that passes them lists, fetches, hashes, deletes and watches the
way the sync, cleanup and live runs rely on."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forge_syncd.remote.transport import WatchFeed
from forge_syncd.remote.types import (
    FetchCallbacks,
    Fetched,
    FetchItem,
    RemoteFile,
    WatchEvent,
    WatchRecord,
)
from tests.conformance.conftest import Box
from tests.support.trees import HOSTILE_NAMES

OLD = 1_700_000_000  # an mtime long settled
NS = 10**9


def hostile_tree(box: Box) -> dict[bytes, tuple[bytes, int]]:
    """Write files with hostile names (quotes, newlines, `$(...)`, leading dashes, bytes
    that are not UTF-8) at the top and in a folder; return {path: (bytes, mtime_ns)}."""
    files: dict[bytes, tuple[bytes, int]] = {}
    for n, name in enumerate(HOSTILE_NAMES):
        for path in (name, b"day 1/" + name):
            data = b"%s, %d bytes of %s" % (path, n, b"x" * (n * 100))
            box.put(path, data, OLD + n)
            files[path] = (data, (OLD + n) * NS)
    return files


def listed(box: Box) -> dict[bytes, RemoteFile]:
    listing = box.transport.list()
    assert not listing.reused and not listing.skipped, listing.skipped
    return {f.path: f for f in listing.files}


def test_listing_gives_hostile_names_byte_for_byte_with_size_and_mtime(box: Box) -> None:
    """Every regular file is listed once, under its exact name (hostile bytes included),
    with its size and its mtime to the nanosecond; nothing else is listed."""
    files = hostile_tree(box)
    got = listed(box)
    assert {p: (f.size, f.mtime_ns) for p, f in got.items()} == {
        p: (len(data), mtime) for p, (data, mtime) in files.items()
    }
    assert box.held() == files  # listing changes nothing


def test_fetch_delivers_each_file_byte_identical_once(box: Box, tmp_path: Path) -> None:
    """Each listed file arrives in a temporary file beside its target with its exact bytes,
    size and sha256, not changed and not racy (its mtime is old); `on_start` comes before
    its one `on_fetched`; `on_bytes` adds up to the bytes fetched; no target is written
    under its final name."""
    files = hostile_tree(box)
    library = os.fsencode(tmp_path / "library")
    items = [FetchItem(f, os.path.join(library, f.path)) for f in listed(box).values()]
    for item in items:
        os.makedirs(os.path.dirname(item.target), exist_ok=True)
    started: list[bytes] = []
    done: list[Fetched] = []
    counted: list[int] = []

    def on_fetched(fetched: Fetched) -> None:
        assert fetched.item.remote.path in started
        done.append(fetched)

    box.transport.prepare_fetch()
    calls = FetchCallbacks(
        on_fetched, counted.append, lambda item: started.append(item.remote.path)
    )
    report = box.transport.fetch(items, calls, threading.Event())
    box.transport.end_run()
    assert report.refused == [] and report.fallback == 0
    assert sorted(f.item.remote.path for f in done) == sorted(files)
    for fetched in done:
        data, mtime_ns = files[fetched.item.remote.path]
        assert fetched.item.remote.mtime_ns == mtime_ns
        assert (fetched.error, fetched.changed, fetched.racy) == (None, False, False)
        assert fetched.temp is not None and fetched.temp != fetched.item.target
        assert os.path.dirname(fetched.temp) == os.path.dirname(fetched.item.target)
        with open(fetched.temp, "rb") as handle:
            assert handle.read() == data
        assert (fetched.nbytes, fetched.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert not os.path.lexists(fetched.item.target)
    assert sum(counted) == sum(len(data) for data, _ in files.values())


def test_fetch_reports_a_file_changed_since_listing_as_changed(box: Box, tmp_path: Path) -> None:
    """A file rewritten between the listing and the fetch (new bytes under a new mtime, or
    a new size) is delivered `changed` (the run discards it and fetches it on the next
    pass), never as a clean copy of the listed file."""
    box.put(b"new-mtime.png", b"A" * 5000, OLD)
    box.put(b"new-size.png", b"B" * 5000, OLD)
    files = listed(box)
    box.put(b"new-mtime.png", b"C" * 5000, OLD + 50)
    box.put(b"new-size.png", b"D" * 6000, OLD)
    library = os.fsencode(tmp_path)
    items = [FetchItem(f, os.path.join(library, f.path)) for f in files.values()]
    done: list[Fetched] = []
    box.transport.fetch(items, FetchCallbacks(done.append), threading.Event())
    assert sorted((f.item.remote.path, f.changed or f.error is not None) for f in done) == [
        (b"new-mtime.png", True),
        (b"new-size.png", True),
    ]


def test_hashes_are_the_sha256_of_the_bytes_held_and_leave_out_the_missing(box: Box) -> None:
    """`hashes` answers each path's sha256 as the container holds it now; a path it does
    not hold is left out, not an error."""
    files = hostile_tree(box)
    asked = [*files, b"never-there.png"]
    assert box.transport.hashes(asked) == {
        path: hashlib.sha256(data).hexdigest() for path, (data, _) in files.items()
    }


def test_delete_removes_only_files_unchanged_since_listing_with_the_given_sha256(
    box: Box,
) -> None:
    """A file is deleted only if it still has its listed size and mtime and its bytes hash
    to the sha256 given for it. One whose bytes differ is kept and reported in `differs`;
    one touched since the listing, one with no sha256 given and one gone since the listing
    are reported nowhere; hostile names are deleted as themselves, nothing else is."""
    files = hostile_tree(box)
    box.put(b"wrong-bytes.png", b"same size, other bytes", OLD)
    box.put(b"touched.png", b"touched after listing", OLD)
    box.put(b"unasked.png", b"no sha256 given", OLD)
    box.put(b"gone.png", b"vanishes", OLD)
    listing = listed(box)
    sha = {p: hashlib.sha256(data).hexdigest() for p, (data, _) in box.held().items()}
    sha[b"wrong-bytes.png"] = hashlib.sha256(b"the library's bytes").hexdigest()
    del sha[b"unasked.png"]
    box.put(b"touched.png", b"touched after listing", OLD + 100)  # same bytes, new mtime
    box.remove(b"gone.png")
    deleted = box.transport.delete(list(listing.values()), sha)
    assert deleted.gone == set(files)
    assert deleted.differs == {b"wrong-bytes.png"}
    assert sorted(box.held()) == [b"touched.png", b"unasked.png", b"wrong-bytes.png"]


def records_until(
    feed: WatchFeed, wanted: Callable[[WatchRecord], bool], what: str
) -> list[WatchRecord]:
    """Read the watcher until a record is `wanted` (30 s at most); return what came."""
    seen: list[WatchRecord] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records, problems = feed.read(0.5)
        assert problems == []
        seen += records
        if any(wanted(record) for record in records):
            return seen
    pytest.fail(f"the watcher reported no {what} in 30 s: {seen}")


def test_the_watcher_reports_a_file_written(watched_box: Box) -> None:
    """Once the watcher is established (it names its backend), a file written on the
    container is reported complete (`w`) under its exact name with its size."""
    box = watched_box
    box.put(b"day/before.png", b"there before the watcher", OLD)
    feed = box.transport.watch()
    try:
        records_until(feed, lambda record: feed.backend != "", "start")
        name = HOSTILE_NAMES[2]  # a newline in the name
        box.put(b"day/" + name, b"written while watched", OLD + 5)

        def written(record: WatchRecord) -> bool:
            f = record.file
            return record.event is WatchEvent.WRITTEN and f is not None and f.path == b"day/" + name

        seen = records_until(feed, written, "write")
        file = next(r.file for r in seen if written(r))
        assert file is not None and file.size == len(b"written while watched")
    finally:
        feed.close()
