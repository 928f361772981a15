"""Files a live watcher pushed behind its records, kept until the fetch that wants them.

The python3 watcher (`transports/shell/watch.py`) sends a small completed file's bytes right
behind its `written` record, on the channel that is already open, so live mode lands it
about one round trip after it was written instead of three (the event travels, the fetch is
asked for, the bytes return). The watcher's stream puts them here; the transport's `fetch`
lands those whose path, size and mtime are the planned file's exactly (`land`), each
written to its temporary file, hashed and fsynced like any fetched file, with the racy-copy
rule applied to the container's clock the watcher read before the bytes; the rest is
fetched as before. Bounded: at most MAX_TOTAL bytes are held (the oldest go first) and for
at most MAX_AGE_S; what is dropped is simply fetched.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from forge_syncd.library.localfs import open_temp, temp_path_for
from forge_syncd.mtimes import settled_by
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, RemoteFile
from forge_syncd.transports.receive import local_failure_kind, local_failure_text, write_all

MAX_TOTAL = 64 * 1024 * 1024
MAX_AGE_S = 120.0


@dataclass(frozen=True, slots=True)
class Pushed:
    file: RemoteFile
    content: bytes
    read_after_ns: int  # the container's clock before the watcher read the bytes
    at: float  # when it came (monotonic)


class PushedFiles:
    """The pushed files of one container, newest last (thread-safe: the watcher's thread
    puts, a run's transfer thread lands)."""

    def __init__(self, max_total: int = MAX_TOTAL, max_age_s: float = MAX_AGE_S) -> None:
        self.max_total = max_total
        self.max_age_s = max_age_s
        self.total = 0
        self._files: OrderedDict[bytes, Pushed] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._files)

    def put(self, file: RemoteFile, content: bytes, read_after_ns: int) -> None:
        """Keep `content` as `file`'s bytes (a newer push of the same path replaces it)."""
        with self._lock:
            self._drop(file.path)
            if len(content) > self.max_total:
                return
            self._files[file.path] = Pushed(file, content, read_after_ns, time.monotonic())
            self.total += len(content)
            while self.total > self.max_total:
                self._drop(next(iter(self._files)))

    def land(self, items: Sequence[FetchItem], calls: FetchCallbacks) -> list[FetchItem]:
        """Write each item whose bytes were pushed (same path, size and mtime) to its
        temporary file and tell `calls`; return the items still to fetch. A pushed file is
        used once."""
        rest: list[FetchItem] = []
        for item in items:
            pushed = self._take(item.remote)
            if pushed is None:
                rest.append(item)
            else:
                calls.on_fetched(_write(item, pushed, calls))
        return rest

    def _take(self, remote: RemoteFile) -> Pushed | None:
        with self._lock:
            pushed = self._files.get(remote.path)
            if pushed is None:
                return None
            self._drop(remote.path)
        fresh = time.monotonic() - pushed.at <= self.max_age_s
        same = (pushed.file.size, pushed.file.mtime_ns) == (remote.size, remote.mtime_ns)
        return pushed if fresh and same else None

    def _drop(self, path: bytes) -> None:
        gone = self._files.pop(path, None)
        if gone is not None:
            self.total -= len(gone.content)


def _write(item: FetchItem, pushed: Pushed, calls: FetchCallbacks) -> Fetched:
    """Write pushed bytes as a fetch writes a file: a temporary beside the target, fsynced."""
    temp = temp_path_for(item.target)
    try:
        fd = open_temp(temp)
    except OSError as exc:
        return _failed(item, exc)
    calls.on_start(item)
    try:
        try:
            write_all(fd, pushed.content)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        os.unlink(temp)
        return _failed(item, exc)
    calls.on_bytes(len(pushed.content))
    calls.on_received(item)
    return Fetched(
        item,
        temp,
        len(pushed.content),
        hashlib.sha256(pushed.content).hexdigest(),
        racy=not settled_by(item.remote.mtime_ns, pushed.read_after_ns),
    )


def _failed(item: FetchItem, exc: OSError) -> Fetched:
    return Fetched(item, None, error=local_failure_text(exc), error_kind=local_failure_kind(exc))
