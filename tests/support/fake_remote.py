"""A container in memory, behind the same interface as the real one (`forge_syncd.remote.
transport.Transport`): the unit tier drives sync and cleanup runs with it, no SSH involved.

Files are {relative path: (bytes, mtime_ns)}. Its listing is the bytes GNU find would print
(so memo reuse sees the same bytes when nothing changed). Faults are set per test: a file
that arrives short, one that changes while read, one whose fetch fails, a listing error.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import open_temp, temp_path_for
from forge_syncd.mtimes import NS, same_mtime, settled_by
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError, WatchEnded
from forge_syncd.remote.transport import Lanes, Probe, Transport, WatchFeed
from forge_syncd.remote.types import (
    Deleted,
    FetchCallbacks,
    Fetched,
    FetchItem,
    FetchReport,
    Listing,
    ListingMethod,
    RemoteFile,
    TransferMethod,
    WatchEvent,
    WatchRecord,
)
from forge_syncd.transports.shell.listing import parse_find_output
from forge_syncd.transports.shell.watch import parse_records


class FakeWatch:
    """A live watcher in memory: tests push records, or feed raw watcher output (parsed by
    the real `parse_records`, as the real watcher's is); `end()` makes it die."""

    def __init__(self) -> None:
        self.records: queue.Queue[WatchRecord | bytes | None] = queue.Queue()
        self.backend = "fake"
        self.closed = False
        self.received = 0
        self._buffer = b""

    def push(self, record: WatchRecord) -> None:
        self.records.put(record)

    def feed(self, output: bytes) -> None:
        """Queue raw watcher output, as the remote script would print it."""
        self.records.put(output)

    def end(self) -> None:
        self.records.put(None)

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        if self.closed:
            raise WatchEnded("closed")
        try:
            first = self.records.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return [], []
        got = [first]
        while not self.records.empty():
            got.append(self.records.get_nowait())
        if any(item is None for item in got):
            raise WatchEnded("the fake watcher died")
        records: list[WatchRecord] = []
        problems: list[str] = []
        for item in got:
            if isinstance(item, bytes):
                self.received += len(item)
                parsed, used, found = parse_records(self._buffer + item)
                self._buffer = (self._buffer + item)[used:]
                records += parsed
                problems += found
            elif item is not None:
                records.append(item)
        return records, problems

    def close(self) -> None:
        self.closed = True
        self.records.put(None)  # wakes a read waiting for records


@dataclass
class FakeRemote:
    """An in-memory container implementing `Transport`."""

    files: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)
    clock: ContainerClock = ContainerClock()  # its offset from ours
    short: set[bytes] = field(default_factory=set)  # arrive one byte short
    changing: set[bytes] = field(default_factory=set)  # change while they are read
    failing: set[bytes] = field(default_factory=set)  # the transfer fails
    listing_error: str | None = None  # list() raises RemoteError with it
    calls: list[str] = field(default_factory=list)  # list, hashes, fetch, delete, ...
    fetched: list[bytes] = field(default_factory=list)  # every path fetched, in order
    watch_error: str | None = None  # watch() raises RemoteError with it
    watcher: FakeWatch | None = None  # the last watcher started
    watchers: int = 0  # how many were started
    backend: str = "fake"  # what a new watcher's header (`h`) names
    watch_output: bytes = b""  # raw output every new watcher sends after its header
    lanes: int = 1  # fetch lanes, itself included (`fetch_lanes`): each fetches as `fetch` does
    shares: list[list[bytes]] = field(default_factory=list)  # each fetch call's paths
    fast_paths: frozenset[str] = frozenset()  # what its probe says it offers ("hash", ...)

    kind = "fake"

    def probe(self) -> Probe:
        return Probe(self.clock, None, self.fast_paths)

    def write(self, path: bytes, data: bytes, mtime_s: int) -> None:
        self.files[path] = (data, mtime_s * 1_000_000_000)

    def listing_bytes(self) -> bytes:
        """What GNU find's script would print for these files (sorted, like a stable fs)."""
        return b"".join(
            b"f\0%d\0%d.0000000000\0./%s\0" % (len(data), mtime // 1_000_000_000, path)
            for path, (data, mtime) in sorted(self.files.items())
        )

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        self.calls.append("list")
        if self.listing_error is not None:
            raise RemoteError(self.listing_error)
        output = self.listing_bytes()
        if reuse is not None and reuse(output):
            return Listing(method=ListingMethod.FIND, reused=True)
        return parse_find_output(output)

    def hashes(
        self, paths: Sequence[bytes], cancel: threading.Event | None = None
    ) -> dict[bytes, str]:
        self.calls.append("hashes")
        if cancel is not None and cancel.is_set():
            raise RemoteError("cancelled")
        return {p: hashlib.sha256(self.files[p][0]).hexdigest() for p in paths if p in self.files}

    def prepare_fetch(self) -> None:
        self.calls.append("prepare_fetch")

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        self.calls.append("fetch")
        self.shares.append([item.remote.path for item in items])
        for item in items:
            calls.on_fetched(self._fetch_one(item, calls, cancel))
        return FetchReport(transfer=TransferMethod.SFTP)  # file by file, as SFTP

    def _fetch_one(
        self, item: FetchItem, calls: FetchCallbacks, cancel: threading.Event
    ) -> Fetched:
        path = item.remote.path
        if cancel.is_set():
            return Fetched(item, None, error="cancelled", error_kind=FileKind.CANCELLED)
        if path not in self.files:
            return Fetched(item, None, error="vanished", error_kind=FileKind.VANISHED)
        if path in self.failing:
            return Fetched(item, None, error="injected failure", error_kind=FileKind.TRANSFER)
        calls.on_start(item)
        self.fetched.append(path)
        data, mtime_ns = self.files[path]
        # Rewritten since it was listed: the real transports see it (tar's post-check,
        # SFTP's stat after the read) and say so.
        moved = len(data) != item.remote.size or not same_mtime(mtime_ns, item.remote.mtime_ns)
        if path in self.short:
            data = data[:-1]
        temp = temp_path_for(item.target)
        fd = open_temp(temp)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        calls.on_bytes(len(data))
        # Its clock is ours (plus the offset), exactly: a file written this very moment
        # is racy, as on a real container.
        now_ns = self.clock.now_ns()
        return Fetched(
            item,
            temp,
            len(data),
            hashlib.sha256(data).hexdigest(),
            changed=path in self.changing or moved,
            racy=not settled_by(mtime_ns, now_ns),
        )

    def fetch_lanes(self, files: int, size: int) -> Lanes:
        self.calls.append("fetch_lanes")
        self.shares = []
        return Lanes([_FakeLane(self) for _ in range(self.lanes - 1)])

    @property
    def connections(self) -> int:
        return 0

    def delete(self, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
        self.calls.append("delete")
        deleted = Deleted()
        for remote in files:
            here = self.files.get(remote.path)
            if here is None or remote.path not in sha256:
                continue
            if (len(here[0]), here[1] // NS) != (remote.size, remote.mtime_ns // NS):
                continue
            if hashlib.sha256(here[0]).hexdigest() != sha256[remote.path]:
                deleted.differs.add(remote.path)
                continue
            del self.files[remote.path]
            deleted.gone.add(remote.path)
        return deleted

    def end_run(self, keep_ready: bool = False) -> None:
        self.calls.append("end_run")

    def watch(self) -> FakeWatch:
        """A live watcher: established at once (a `h` record), or `watch_error` raised."""
        self.calls.append("watch")
        if self.watch_error is not None:
            raise RemoteError(self.watch_error)
        self.watcher = FakeWatch()
        self.watcher.push(WatchRecord(WatchEvent.STARTED, message=self.backend))
        if self.watch_output:
            self.watcher.feed(self.watch_output)
        self.watchers += 1
        return self.watcher

    def written(self, path: bytes, data: bytes, mtime_s: int) -> None:
        """Write a file and have the watcher report it complete (`w`)."""
        self.write(path, data, mtime_s)
        assert self.watcher is not None
        self.watcher.push(
            WatchRecord(WatchEvent.WRITTEN, RemoteFile(path, len(data), mtime_s * 10**9))
        )

    def close(self) -> None:
        self.calls.append("close")


# mypy (pyproject `files`) checks that the fake stays what it stands in for.
_: Transport = FakeRemote()
_feed: WatchFeed = FakeWatch()


@dataclass
class _FakeLane:
    """An extra lane of a FakeRemote: ready at once, then fetches as the remote does."""

    remote: FakeRemote

    def ready(self) -> None:
        pass

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        return self.remote.fetch(items, calls, cancel)
