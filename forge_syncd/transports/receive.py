"""The local side of any fetch, whatever the transport: the `bwlimit` token bucket, writing
received bytes to a temporary file, and the error kinds of a failed local write."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time

from forge_syncd.errorkinds import FileKind
from forge_syncd.remote.types import Fetched, FetchItem


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
