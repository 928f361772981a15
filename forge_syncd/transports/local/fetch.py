"""Copy listed files of a local source folder into their temporary files beside their
targets: each opened without following a link (`beneath.py`; each folder opened once per
worker), read once, checked unchanged afterwards (size, mtime, ctime, inode), and made
durable a batch at a time with one syncfs(2), as the tar stream does, instead of an fsync
per file. A small file is read into memory, hashed and written from there (the bytes the
library holds); a larger one is copied in the kernel (copy_file_range: a reflink where the
filesystem shares extents) and its copy read back to hash it."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import (
    open_temp,
    start_writeback_later,
    sync_filesystem,
    temp_path_for,
)
from forge_syncd.mtimes import same_mtime, settled_by
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, OnBytes, OnFetched
from forge_syncd.transports.local.beneath import Parents
from forge_syncd.transports.receive import (
    Cancelled,
    RateLimiter,
    local_failure_kind,
    local_failure_text,
)

CHUNK = 1024 * 1024
KERNEL_CHUNK = 8 * 1024 * 1024  # per copy_file_range call: cancel and progress between
# copy_file_range cannot copy between these two files: copy through the process instead.
NO_KERNEL_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)
FLUSH_FILES = 1000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_S = 2.0


@dataclass(frozen=True)
class Plan:
    """What a copy needs besides its items."""

    root_fd: int
    workers: int
    limiter: RateLimiter


@dataclass
class _Batch:
    """Copies written and closed, waiting for one syncfs before they are handed over."""

    done: list[Fetched]
    nbytes: int = 0
    since: float = 0.0


def copy_all(
    plan: Plan, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
) -> None:
    """Copy every item with `plan.workers` threads (big files first); `on_fetched` once per
    item, after the batch it is in is durable."""
    work: queue.SimpleQueue[FetchItem] = queue.SimpleQueue()
    for item in sorted(items, key=lambda i: -i.remote.size):
        work.put(item)
    args = (plan, work, calls, cancel)
    threads = [
        threading.Thread(target=_worker, args=args, name=f"local-copy-{n}", daemon=True)
        for n in range(max(1, min(plan.workers, len(items))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _worker(
    plan: Plan,
    work: queue.SimpleQueue[FetchItem],
    calls: FetchCallbacks,
    cancel: threading.Event,
) -> None:
    on_fetched = calls.on_fetched
    batch = _Batch([], 0, time.monotonic())
    buffer = bytearray(CHUNK)
    parents = Parents(plan.root_fd)
    try:
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                break
            if cancel.is_set():
                on_fetched(Fetched(item, None, error="cancelled", error_kind=FileKind.CANCELLED))
                continue
            calls.on_start(item)
            fetched = copy_one(plan, parents, item, buffer, calls.on_bytes, cancel)
            if fetched.temp is None:
                on_fetched(fetched)
                continue
            calls.on_received(item)
            batch.done.append(fetched)
            batch.nbytes += fetched.nbytes
            if (
                len(batch.done) >= FLUSH_FILES
                or batch.nbytes >= FLUSH_BYTES
                or time.monotonic() - batch.since >= FLUSH_S
            ):
                _flush(batch, on_fetched)
    finally:
        parents.close()
        _flush(batch, on_fetched)


def _flush(batch: _Batch, on_fetched: OnFetched) -> None:
    """Make the batch durable with one syncfs, then hand each copy over."""
    done, batch.done, batch.nbytes, batch.since = batch.done, [], 0, time.monotonic()
    if not done:
        return
    temp = done[0].temp
    assert temp is not None
    try:
        sync_filesystem(os.path.dirname(temp))
    except OSError as exc:
        for fetched in done:
            _unlink(fetched.temp)
            on_fetched(
                Fetched(
                    fetched.item, None, error=f"sync failed: {exc}", error_kind=FileKind.TRANSFER
                )
            )
        return
    for fetched in done:
        on_fetched(fetched)


def copy_one(
    plan: Plan,
    parents: Parents,
    item: FetchItem,
    buffer: bytearray,
    on_bytes: OnBytes,
    cancel: threading.Event,
) -> Fetched:
    """Copy one file into a temporary file beside its target; return the outcome (a `temp`
    only when every byte was written and the source was the listed file throughout)."""
    read_after_ns = time.time_ns()  # this machine's clock is the source's: offset 0
    try:
        source, before = parents.open_file(item.remote.path)
    except OSError as exc:
        return _unreadable(item, exc)
    temp = temp_path_for(item.target)
    try:
        target = open_temp(temp)
    except OSError as exc:
        os.close(source)
        return _local(item, exc)
    try:
        # One byte past the listed size shows the file changed; reading on would follow a
        # file that keeps growing without end.
        limit = item.remote.size + 1
        if limit <= len(buffer):
            written, digest = _copy_small(plan, source, target, limit, buffer, on_bytes)
            after = os.fstat(source)
        else:
            written = _copy_bytes(plan, source, target, limit, buffer, on_bytes, cancel)
            after = os.fstat(source)
            # The sha256 of the bytes the library holds: the copy's, read back (from the
            # page cache), never a second read of a source that may change in between.
            digest = _sha256_of(temp, buffer)
    except Cancelled:
        return _discard(item, temp, target, source, "cancelled", FileKind.CANCELLED)
    except OSError as exc:
        _discard(item, temp, target, source, "", FileKind.TRANSFER)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return _local(item, exc)
        return Fetched(item, None, error=f"read failed: {exc}", error_kind=FileKind.TRANSFER)
    start_writeback_later(target, written)  # the disk works while the next files copy
    os.close(source)
    os.close(target)
    seen = (before.st_size, before.st_mtime_ns, before.st_ctime_ns, before.st_ino)
    changed = (
        written != item.remote.size
        or seen != (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino)
        or not same_mtime(after.st_mtime_ns, item.remote.mtime_ns)
    )
    racy = not settled_by(item.remote.mtime_ns, read_after_ns)
    return Fetched(item, temp, written, digest, changed, racy=racy)


def _copy_small(
    plan: Plan, source: int, target: int, limit: int, buffer: bytearray, on_bytes: OnBytes
) -> tuple[int, str]:
    """Read at most `limit` bytes (no more than `buffer` holds) from `source` into `buffer`,
    write them to `target`; return how many and the sha256 of those very bytes."""
    view = memoryview(buffer)
    count = 0
    while count < limit:
        got = os.readv(source, [view[count:limit]])
        if not got:
            break
        count += got
    _write_all(target, view[:count])
    on_bytes(count)
    plan.limiter.consume(count)
    return count, hashlib.sha256(view[:count]).hexdigest()


def _copy_bytes(
    plan: Plan,
    source: int,
    target: int,
    limit: int,
    buffer: bytearray,
    on_bytes: OnBytes,
    cancel: threading.Event,
) -> int:
    """Copy at most `limit` bytes from `source` to `target`; return how many. In the kernel
    (copy_file_range(2): no copy through this process, and a reflink where the filesystem
    shares extents, as `cp --reflink=auto` would), else, where the kernel refuses it for
    these two files, through `buffer`. Raise Cancelled or OSError."""
    view = memoryview(buffer)
    written = 0
    kernel = True
    while written < limit:
        if cancel.is_set():
            raise Cancelled
        want = min(KERNEL_CHUNK, limit - written)
        if kernel:
            try:
                count = os.copy_file_range(source, target, want)
            except OSError as exc:
                if written or exc.errno not in NO_KERNEL_COPY:
                    raise
                kernel = False
                continue
        else:
            count = os.readv(source, [view[: min(CHUNK, want)]])
            _write_all(target, view[:count])
        if not count:
            break
        written += count
        on_bytes(count)
        plan.limiter.consume(count)
    return written


def _sha256_of(path: bytes, buffer: bytearray) -> str:
    """Return the sha256 of the file we wrote at `path`."""
    digest = hashlib.sha256()
    view = memoryview(buffer)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while count := os.readv(fd, [view]):
            digest.update(view[:count])
    finally:
        os.close(fd)
    return digest.hexdigest()


def _unreadable(item: FetchItem, exc: OSError) -> Fetched:
    """The listed file cannot be opened: gone, or no longer a regular file (a link or a
    folder where it was: never followed), or unreadable."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, 0):
        return Fetched(
            item, None, error="vanished or no longer a regular file", error_kind=FileKind.VANISHED
        )
    return Fetched(
        item, None, error=f"cannot read it: {exc.strerror}", error_kind=FileKind.TRANSFER
    )


def _local(item: FetchItem, exc: OSError) -> Fetched:
    return Fetched(item, None, error=local_failure_text(exc), error_kind=local_failure_kind(exc))


def _discard(
    item: FetchItem, temp: bytes, target: int, source: int, error: str, kind: FileKind
) -> Fetched:
    os.close(target)
    os.close(source)
    _unlink(temp)
    return Fetched(item, None, error=error, error_kind=kind)


def _unlink(path: bytes | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]
