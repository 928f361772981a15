"""Transfer strategies: how the bytes of many remote files reach local temporary files.

A strategy is given the files to fetch and calls `on_fetched` (of its `FetchCallbacks`) once
per file (from any thread) with a `Fetched`: the temporary file it wrote and fsynced, the
byte count and sha256 (when asked to hash) of what it wrote, and whether the remote file
changed while it was read. Verifying, renaming into place and recording are the caller's
job (`forge_syncd.sync`), so every strategy gets the same safety rules. Strategies never
write outside the temporary names they are given.
"""

from __future__ import annotations

import errno
import hashlib
import os
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

import paramiko

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import open_temp, temp_path_for
from forge_syncd.mtimes import NS, same_mtime, settled_by
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import (
    EarliestNow,
    FetchCallbacks,
    Fetched,
    FetchItem,
    OnBytes,
    TransferMethod,
)
from forge_syncd.transports.receive import (
    Cancelled,
    RateLimiter,
    _discard,
    _local_failure,
    remote_file,
    write_all,
)
from forge_syncd.transports.ssh.connection import Connection
from forge_syncd.transports.ssh.shells import close_quietly

CHUNK = 256 * 1024
PREFETCH_REQUESTS = 64  # 64 x 32 KiB requests in flight per file: bounded memory


class TransferStrategy(Protocol):
    name: str

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> None:
        """Fetch every item, reporting each through `calls.on_fetched`; return when all are
        done. `calls.on_start` is told when a file's transfer begins."""


class SftpStrategy:
    """`transfers` worker threads, each with its own SFTP session on the shared connection."""

    name = TransferMethod.SFTP

    def __init__(
        self,
        connection: Connection,
        root: str,
        transfers: int,
        limiter: RateLimiter | None = None,
        earliest_now: EarliestNow | None = None,
    ) -> None:
        """`root`: the container's root on the remote; `earliest_now`: a time the
        container's clock has surely passed (default: ours less CLOCK_SLACK_NS). Every file's
        sha256 is computed while it is written (the library copy's, kept in the manifest)."""
        self.connection = connection
        self.root = root
        self.transfers = max(1, transfers)
        self.limiter = limiter or RateLimiter(None)
        self.earliest_now = earliest_now or ContainerClock().surely_passed_ns

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> None:
        """Fetch every item, reporting each through `calls.on_fetched` (from the worker
        threads); return when all are done. `calls.on_received` is never called: each file
        is handed over as soon as it arrives."""
        work: queue.SimpleQueue[FetchItem | None] = queue.SimpleQueue()
        for item in sorted(items, key=lambda i: -i.remote.size):  # big files first
            work.put(item)
        workers = [
            threading.Thread(
                target=self._worker,
                args=(work, calls, cancel),
                name=f"sftp-{n}",
                daemon=True,
            )
            for n in range(min(self.transfers, len(items)))
        ]
        for worker in workers:
            work.put(None)
            worker.start()
        for worker in workers:
            worker.join()

    def _worker(
        self,
        work: queue.SimpleQueue[FetchItem | None],
        calls: FetchCallbacks,
        cancel: threading.Event,
    ) -> None:
        sftp: paramiko.SFTPClient | None = None
        try:
            while (item := work.get()) is not None:
                if cancel.is_set():
                    calls.on_fetched(
                        Fetched(item, None, error="cancelled", error_kind=FileKind.CANCELLED)
                    )
                    continue
                try:
                    sftp = sftp or self.connection.open_sftp(self.transfers)
                except RemoteError as exc:
                    calls.on_fetched(
                        Fetched(item, None, error=str(exc), error_kind=FileKind.TRANSFER)
                    )
                    continue
                calls.on_start(item)
                calls.on_fetched(self._fetch_one(sftp, item, calls.on_bytes, cancel))
        finally:
            if sftp is not None:
                close_quietly(sftp)

    def _fetch_one(
        self,
        sftp: paramiko.SFTPClient,
        item: FetchItem,
        on_bytes: OnBytes,
        cancel: threading.Event,
    ) -> Fetched:
        temp = temp_path_for(item.target)
        try:
            fd = open_temp(temp)
        except OSError as exc:
            return _local_failure(item, None, exc)
        digest = hashlib.sha256()
        read_after_ns = self.earliest_now()
        written = 0
        try:
            with sftp.open(remote_file(self.root, item.remote.path), "rb") as remote:
                remote.prefetch(item.remote.size, PREFETCH_REQUESTS)
                # One byte past the listed size shows the file changed; reading on would
                # follow a file that keeps growing (or a lying size) without end.
                limit = item.remote.size + 1
                while written < limit and (chunk := remote.read(min(CHUNK, limit - written))):
                    if cancel.is_set():
                        raise Cancelled
                    write_all(fd, chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    on_bytes(len(chunk))
                    self.limiter.consume(len(chunk))
                after = remote.stat()
            os.fsync(fd)
        except Cancelled:
            return _discard(item, temp, fd, "cancelled", FileKind.CANCELLED)
        except FileNotFoundError:
            return _discard(item, temp, fd, "vanished from the remote", FileKind.VANISHED)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                _discard(item, temp, fd, "", FileKind.DISK_FULL)
                return _local_failure(item, None, exc)
            return _discard(item, temp, fd, f"read failed: {exc}", FileKind.TRANSFER)
        except (paramiko.SSHException, EOFError) as exc:
            return _discard(item, temp, fd, f"connection failed: {exc}", FileKind.TRANSFER)
        os.close(fd)
        changed = (
            written != item.remote.size
            or after.st_size != item.remote.size
            # SFTP gives whole seconds: compared at the listing's precision.
            or not same_mtime((after.st_mtime or 0) * NS, item.remote.mtime_ns)
        )
        racy = not settled_by(item.remote.mtime_ns, read_after_ns)
        return Fetched(item, temp, written, digest.hexdigest(), changed, racy=racy)
