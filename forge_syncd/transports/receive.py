"""The local side of any fetch, whatever the transport: the `bwlimit` token bucket, writing
received bytes to a temporary file, the error kinds of a failed local write, and
`MemberWriter`, which writes the members of an archive stream into temporary files and
hands them over in batches."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import open_temp, start_writeback_later, temp_path_for
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem

# A stream's finished files are handed over (made durable, checked, recorded) in batches
# of FLUSH_FILES files, FLUSH_BYTES bytes or FLUSH_S seconds, whichever comes first; at most
# BATCHES_AHEAD batches wait, then the stream waits.
FLUSH_FILES = 1000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_S = 2.0
BATCHES_AHEAD = 2


class RateLimiter:
    """A token bucket shared by a container's transfers (`bwlimit`). None = unlimited."""

    def __init__(self, rate_bps: int | None) -> None:
        self.rate = rate_bps
        self._lock = threading.Lock()
        self._next_free = time.monotonic()

    def consume(self, nbytes: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + nbytes / self.rate
            delay = self._next_free - now - 1.0  # allow a one-second burst
        if delay > 0:
            time.sleep(delay)

    def read_size(self, wanted: int) -> int:
        """How much a transfer should read at once (`wanted` without a limit): under a
        limit, small reads, so the sender is let go in small steps, not bursts that queue
        on the link (`limits.registry.Limiter`)."""
        return wanted

    def flight_cap(self, reader: object) -> int | None:
        """The most bytes the transfer `reader` (any key, one per stream) should let its
        sender have unread at once (None: its window, no cap): under `bwlimit: auto`, a
        queue on the link then stays near the target even while the rate is above the
        link's (`limits.registry.Limiter`)."""
        return None


class Cancelled(Exception):
    pass


def remote_file(root: str, relative: bytes) -> bytes:
    """Return the absolute remote path of a file given relative to the container's root."""
    return root.rstrip("/").encode() + b"/" + relative


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _discard(item: FetchItem, temp: bytes, fd: int, error: str, kind: FileKind) -> Fetched:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    return Fetched(item, None, error=error, error_kind=kind)


def local_failure_kind(exc: OSError) -> FileKind:
    """Given the OSError of a local write, return its error kind: `disk_full` for a full
    disk or quota, else `transfer`."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return FileKind.DISK_FULL
    return FileKind.TRANSFER


def local_failure_text(exc: OSError) -> str:
    """Given the OSError of a local write, return the error text a Fetched carries."""
    return f"local write failed: {exc.strerror}"


def _local_failure(item: FetchItem, temp: bytes | None, exc: OSError) -> Fetched:
    return Fetched(item, temp, error=local_failure_text(exc), error_kind=local_failure_kind(exc))


@dataclass(slots=True)
class Received:
    """One member of a stream, written to `temp` (open as `fd` while it comes)."""

    item: FetchItem
    temp: bytes
    fd: int
    digest: hashlib._Hash
    read_after_ns: int  # the container's clock before it was read there
    written: int = 0
    failure: OSError | None = None  # the local write error that stopped it
    changed: bool = False  # its archive header says it is not the file the listing saw


# Given a batch of finished members and whether the stream ended cleanly (so it vouches
# for them), make them durable, check them and tell the caller (`on_fetched`).
HandOver = Callable[[list[Received], bool], None]


class MemberWriter:
    """The local side of an archive stream (a tar over SSH, or any transport's): each
    member is written to the temporary file beside its target and hashed as it comes
    (`start`, `write`, `end`), and finished members are handed over in batches on a thread
    of their own (`HandOver`), so making them durable and checking them overlaps the
    stream. Used as a context manager: leaving it hands over what waits and ends that
    thread. A hand-over that fails sets `abort` (the stream should stop) and is kept in
    `failures`; batches after it are discarded, to be fetched again."""

    def __init__(
        self, by_name: Mapping[bytes, FetchItem], calls: FetchCallbacks, hand_over: HandOver
    ) -> None:
        self.by_name = by_name
        self.calls = calls
        self.hand_over = hand_over
        self.abort = threading.Event()
        self.failures: list[str] = []
        self._clean = threading.Event()
        # Bounded: when the disk (syncfs) or the remote check falls behind the stream, the
        # stream waits instead of holding ever more finished files in memory.
        self._batches: queue.Queue[list[Received] | None] = queue.Queue(BATCHES_AHEAD)
        self._current: dict[bytes, Received] = {}
        self._ready: list[Received] = []
        self._ready_bytes = 0
        self._last_flush = time.monotonic()
        self._finisher = threading.Thread(target=self._finish, name="tar-finish", daemon=True)

    def __enter__(self) -> MemberWriter:
        self._finisher.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._batches.put(None)
        self._finisher.join()

    def start(self, name: bytes, read_after_ns: int) -> None:
        """Member `name` begins; the container's clock had passed `read_after_ns` before
        it was read there. Raise OSError when its temporary file cannot be made."""
        item = self.by_name[name]
        temp = temp_path_for(item.target)
        self._current[name] = Received(item, temp, open_temp(temp), hashlib.sha256(), read_after_ns)
        self.calls.on_start(item)

    def write(self, name: bytes, chunk: bytes) -> None:
        got = self._current[name]
        write_all(got.fd, chunk)
        got.digest.update(chunk)
        got.written += len(chunk)
        self.calls.on_bytes(len(chunk))

    def end(self, name: bytes, failure: OSError | None) -> None:
        """Member `name` ended, whole or stopped by the local write error `failure`."""
        got = self._current.pop(name)
        if failure is None:
            start_writeback_later(got.fd, got.written)
        os.close(got.fd)
        got.fd = -1
        got.failure = failure
        self._ready.append(got)
        self._ready_bytes += got.written
        if failure is None:
            self.calls.on_received(got.item)
        if (
            len(self._ready) >= FLUSH_FILES
            or self._ready_bytes >= FLUSH_BYTES
            or time.monotonic() - self._last_flush >= FLUSH_S
        ):
            self._flush()

    def drop_open(self) -> None:
        """Delete the member being written when the stream broke (it never ended)."""
        for got in self._current.values():
            os.close(got.fd)
            unlink_quietly(got.temp)
        self._current.clear()

    def stream_ended(self, clean: bool) -> None:
        """The stream is over; `clean`: it vouched for every member it sent, so batches
        still waiting need no check. Hand over the last batch."""
        if clean:
            self._clean.set()
        if self._ready:
            self._flush()

    def _flush(self) -> None:
        self._batches.put(self._ready)
        self._ready = []
        self._ready_bytes = 0
        self._last_flush = time.monotonic()

    def _finish(self) -> None:
        """Hand over batches off the reading thread. Batches waiting together are handed
        over together; those still waiting when the stream ended cleanly need no check."""
        closing = False
        while not closing:
            batch = self._batches.get()
            if batch is None:
                return
            while True:
                try:
                    more = self._batches.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch += more
            if self.abort.is_set():
                discard_received(batch)  # the stream is stopping: fetched again later
                continue
            try:
                self.hand_over(batch, self._clean.is_set())
            except Exception as exc:  # never leave the stream blocked on a dead thread
                self.failures.append(f"internal error: {type(exc).__name__}: {exc}")
                discard_received(batch)
                self.abort.set()


def discard_received(batch: list[Received]) -> None:
    """Delete the temporary files of members that will not be handed over."""
    for got in batch:
        unlink_quietly(got.temp)


def unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
