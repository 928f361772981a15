"""Landing fetched files: verify, move into place, record.

On the transfer threads, each fetched file is checked (`verify.fetched_problem`), given its
remote mtime and renamed into place — whatever other bytes stand there are first moved into
`.versions/` (`library/versions.py`); a file whose bytes a library copy already holds is
first made to share that copy's blocks (`library/dedupe.py`). On the run's own thread,
finished files are recorded in batches: their folders fsynced (or one syncfs), then one
transaction with their events. A file counts as synced only once that transaction
committed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from typing import Any

from forge_syncd.errorkinds import DEFERRED, ErrorKind, FileKind
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library import events as records
from forge_syncd.library import localfs
from forge_syncd.library.dedupe import HARDLINK, MIN_SIZE, REFLINK, Sharer
from forge_syncd.library.manifest import SyncedFile, VersionMove
from forge_syncd.library.versions import Versions
from forge_syncd.paths import display, local_path
from forge_syncd.remote.types import Fetched
from forge_syncd.sync.verify import fetched_problem

COMMIT_EVERY_FILES = 256
COMMIT_EVERY_S = 1.0
COLLECT_S = 0.05
SYNCFS_OVER_FOLDERS = 4


class Committer:
    """Lands the files of one sync run (see the module docstring)."""

    def __init__(
        self,
        ctx: JobContext,
        log: Any,
        run_id: str,
        outcome: RunOutcome,
        versions: Versions,
        remote_hashes: dict[bytes, str],
        sharer: Sharer | None = None,
    ) -> None:
        """`sharer`: shares landing files' blocks with library copies (None: never)."""
        self.ctx = ctx
        self.log = log
        self.run_id = run_id
        self.outcome = outcome
        self.versions = versions
        self.remote_hashes = remote_hashes
        self._done: queue.SimpleQueue[SyncedFile | Fetched] = queue.SimpleQueue()
        self._moves: dict[bytes, list[VersionMove]] = {}  # made for a path, not yet recorded
        self._moves_lock = threading.Lock()
        self.landed: set[bytes] = set()  # paths recorded synced by this run
        self.deferred = 0  # files changed or vanished while fetched (the next run's)
        self.sharer = sharer
        # Temp files the remote-hash shortcut made from library copies: how (reflink,
        # hardlink, copy); not shared again.
        self.prepared: dict[bytes, str] = {}
        self._shared: set[bytes] = set()  # paths landed sharing blocks, not yet recorded
        self._landed: dict[tuple[str | None, int], bytes] = {}  # bytes landed: where

    def on_fetched(self, fetched: Fetched) -> None:
        """Runs in transfer threads: verify and rename, then hand over for recording. Never
        raises: a defect fails this one file (kind `internal`), not the thread that reads
        the stream (which would leave the stream blocked and the run hung)."""
        try:
            result = self._finish(fetched)
        except Exception as exc:
            if fetched.temp is not None:
                _unlink_quietly(fetched.temp)
            error = f"internal error: {type(exc).__name__}: {exc}"[:500]
            result = Fetched(fetched.item, None, error=error, error_kind=FileKind.INTERNAL)
        if isinstance(result, SyncedFile):
            # Counted as it lands (under its name), not when its batch is recorded: the
            # progress moves a file at a time (a failed file is counted by `fail_file`).
            self.ctx.progress.file_done(result.path)
        self._done.put(result)

    def _finish(self, fetched: Fetched) -> SyncedFile | Fetched:
        item, remote = fetched.item, fetched.item.remote
        if fetched.temp is None:
            return fetched
        sha256_wanted = self.ctx.container.sync.verify == "sha256"
        problem = fetched_problem(fetched, sha256_wanted, self.remote_hashes.get(remote.path))
        if problem is not None:
            os.unlink(fetched.temp)
            return Fetched(item, None, error=problem[0], error_kind=problem[1])
        how = self.prepared.pop(fetched.temp, None)
        key = (fetched.sha256, remote.size)
        if how is None and self.sharer is not None:
            with self._moves_lock:
                also = self._landed.get(key)
            how = self.sharer.share_temp(
                fetched.temp,
                item.target,
                fetched.sha256,
                remote.size,
                () if also is None else (also,),
            )
        try:
            if how != HARDLINK:  # a hard link's mtime is its inode's: the first copy's
                os.utime(fetched.temp, ns=(remote.mtime_ns, remote.mtime_ns))
            moves = self.versions.make_way(remote.path, fetched.temp)
            if moves:
                with self._moves_lock:
                    self._moves.setdefault(remote.path, []).extend(moves)
            # Over a file only when it holds these very bytes (make_way left it there).
            if os.path.lexists(item.target):
                os.rename(fetched.temp, item.target)
            else:
                localfs.rename_noreplace(fetched.temp, item.target)
        except (OSError, ValueError) as exc:
            _unlink_quietly(fetched.temp)
            return Fetched(
                item, None, error=f"cannot move into place: {exc}", error_kind=FileKind.TRANSFER
            )
        with self._moves_lock:
            if how in (REFLINK, HARDLINK):
                self._shared.add(remote.path)
            elif self.sharer is not None and remote.size >= MIN_SIZE:
                self._landed.setdefault(key, item.target)  # the first copy: others share it
        return SyncedFile(remote.path, remote.size, remote.mtime_ns, fetched.sha256, fetched.racy)

    def run(self, worker: threading.Thread) -> None:
        """Record finished files in batches until `worker` (the transfer) has ended and
        everything it handed over is recorded."""
        batch: list[SyncedFile] = []
        last_commit = time.monotonic()
        while worker.is_alive() or not self._done.empty():
            # Collect what arrived every COLLECT_S instead of waking for each file: a wake
            # per file costs a GIL hand-over (futex calls, a context switch) against the
            # threads that do the work, thousands of times a second on small files.
            done: list[SyncedFile | Fetched] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    done.append(self._done.get_nowait())
            if not done:
                worker.join(COLLECT_S)
            for item in done:
                if isinstance(item, SyncedFile):
                    batch.append(item)
                else:
                    kind = item.error_kind or FileKind.TRANSFER
                    self.fail_file(item.item.remote.path, item.error or "", kind)
            if batch and (
                len(batch) >= COMMIT_EVERY_FILES or time.monotonic() - last_commit > COMMIT_EVERY_S
            ):
                self._commit(batch)
                batch, last_commit = [], time.monotonic()
        if batch:
            self._commit(batch)
        with self._moves_lock:  # moves whose new file never arrived: recorded all the same
            left, self._moves = [m for ms in self._moves.values() for m in ms], {}
        self.versions.finish(left)
        self.outcome.versions += len(left)

    def _commit(self, batch: list[SyncedFile]) -> None:
        """Make the batch's renames durable, then record it (one transaction)."""
        ctx = self.ctx
        container_dir = ctx.container_dir
        folders = {os.path.dirname(local_path(container_dir, f.path)) for f in batch}
        if len(folders) > SYNCFS_OVER_FOLDERS:
            localfs.sync_filesystem(container_dir)  # one call instead of many fsyncs
        else:
            for folder in folders:
                localfs.fsync_folder(folder)
        with self._moves_lock:
            moves = [m for f in batch for m in self._moves.pop(f.path, ())]
        name = ctx.container.name
        events = self.versions.events(moves)  # before the new files' events: catalog order
        events += [
            records.file_synced(name, self.run_id, container_dir, synced) for synced in batch
        ]
        events.append(records.batch_synced(name, self.run_id, batch))
        ctx.manifest.files.record_synced(name, batch, events, moves)
        with self._moves_lock:
            shared = [f.path for f in batch if f.path in self._shared]
            self._shared.difference_update(shared)
        ctx.manifest.shared.mark_shared(name, shared)
        self.outcome.versions += len(moves)
        for synced in batch:
            if not synced.racy:  # a racy copy stays at risk until a later look confirms it
                self.landed.add(synced.path)
            self.outcome.files += 1
            self.outcome.bytes += synced.size
            ctx.progress.record_synced(synced.size)
            if synced.racy:
                self.log.info(
                    "file_synced", path=display(synced.path), bytes=synced.size, recheck=True
                )
            else:
                self.log.info("file_synced", path=display(synced.path), bytes=synced.size)

    def fail_file(self, path: bytes, error: str, kind: FileKind) -> None:
        """Account for a file that was not synced: deferred (changed, vanished), cancelled,
        or a failure of the run (a disk that is full also stops the run)."""
        self.ctx.progress.file_done(path)
        if kind in DEFERRED:
            self.log.info("file_deferred", path=display(path), reason=error)
            self.deferred += 1
            return
        if kind == FileKind.CANCELLED:
            self.outcome.cancelled = True
            return
        self.outcome.failed_files += 1
        self.outcome.error_kinds.add(ErrorKind(kind.value))
        self.outcome.error = f"{display(path)}: {error}"
        self.log.warning("file_failed", path=display(path), error=error, kind=kind)
        if kind == FileKind.DISK_FULL:
            self.ctx.cancel.set()


def _unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
