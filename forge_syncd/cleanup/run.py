"""One cleanup run of one container: list, decide (`rules.py`), re-check, fsync, delete in
batches, record. The container is reached only through a `Remote`."""

from __future__ import annotations

import os
import time
from typing import Any

from forge_syncd import localfs
from forge_syncd.cleanup.rules import (
    KEEP,
    PURGE,
    Decision,
    Hashes,
    held_back,
    select_purgeable,
    settle_intents,
)
from forge_syncd.errorkinds import ErrorKind
from forge_syncd.events import records
from forge_syncd.job import JobContext, RunOutcome, run_job
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import FileFilter
from forge_syncd.remote.listing import RemoteFile
from forge_syncd.sync.local import local_state
from forge_syncd.sync.plan import NS
from forge_syncd.sync.verify import file_sha256

BATCH = 500


class CleanupRun:
    """The I/O of one cleanup run of one container."""

    def __init__(
        self,
        ctx: JobContext,
        dry_run: bool,
        log: Any,
        run_id: str,
        only: list[RemoteFile] | None = None,
    ) -> None:
        """`only`: purge exactly these files (a drain's verified ones), re-checked as any
        purge is, instead of deciding by the cleanup rules (None)."""
        self.ctx = ctx
        self.only = only
        self.container = ctx.container
        self.container_dir = ctx.container_dir
        self.manifest = ctx.manifest
        self.remote = ctx.remote
        self.dry_run = dry_run
        self.log = log
        self.run_id = run_id
        self.outcome = RunOutcome()

    def run(self) -> RunOutcome:
        if self.only is not None:
            decisions = [Decision(f, PURGE, "") for f in self.only]
        else:
            decisions = self._decide()
        self.outcome.details["decisions"] = [
            d.as_dict() for d in decisions if d.reason != "too_young"
        ]
        self.outcome.details["dry_run"] = self.dry_run
        for decision in decisions:
            if decision.action == KEEP and decision.reason != "too_young":
                self.log.info(
                    "file_kept",
                    path=display(decision.file.path),
                    bytes=decision.file.size,
                    reason=decision.reason,
                )
        purge = [d.file for d in decisions if d.action == PURGE]
        if self.dry_run:
            for remote in purge:
                self.log.info(
                    "file_would_purge", path=display(remote.path), bytes=remote.size, dry_run=True
                )
            return self.outcome
        progress = self.ctx.progress
        progress.begin("cleanup", len(purge), sum(f.size for f in purge))
        try:
            for start in range(0, len(purge), BATCH):
                if self.ctx.cancel.is_set():
                    self.outcome.cancelled = True
                    break
                self._purge_batch(purge[start : start + BATCH])
        finally:
            progress.end()
        return self.outcome

    def _decide(self) -> list[Decision]:
        listing = self.remote.list(cancel=self.ctx.cancel)
        self._reconcile(listing.files)
        sync = self.container.sync
        wants = FileFilter(sync.include, sync.exclude)
        rows = self.manifest.records(self.container.name)
        local = local_state(self.container_dir, listing.files, wants)
        now_ns = int((time.time() + self.remote.clock_offset_s) * NS)
        cutoff = now_ns - int(self.container.cleanup.older_than_s * NS)
        preserve = self.container.cleanup.preserve
        forget = sync.on_local_delete == "forget"
        decisions = select_purgeable(
            listing.files, rows, local, wants, preserve, cutoff, forget=forget
        )
        if sync.verify != "sha256":
            return decisions
        candidates = [d.file.path for d in decisions if d.action == PURGE]
        remote = self.remote.hashes(candidates)
        hashes = {
            path: Hashes(file_sha256(local_path(self.container_dir, path)), remote.get(path))
            for path in candidates
        }
        return select_purgeable(listing.files, rows, local, wants, preserve, cutoff, hashes, forget)

    def _reconcile(self, files: list[RemoteFile]) -> None:
        """Record the purges a crash left unrecorded (`rules.settle_intents`), with their
        events, now."""
        intents = self.manifest.purge_intents(self.container.name)
        if not intents:
            return
        listed = {f.path: (f.size, f.mtime_ns) for f in files}
        gone, changed = settle_intents(intents, listed)
        name = self.container.name
        events = [records.file_purged(name, self.run_id, path, intents[path][0]) for path in gone]
        self.manifest.record_purged(name, gone, events, settled=changed)
        for path in gone:
            self.outcome.files += 1
            self.outcome.bytes += intents[path][0]
            self.log.info("file_purged", path=display(path), bytes=intents[path][0], recovered=True)

    def _purge_batch(self, batch: list[RemoteFile]) -> None:
        """Re-check the local copies, make them durable, delete remotely, record."""
        name = self.container.name
        rows = self.manifest.records(name)
        ready = []
        for remote in batch:
            row = rows.get(remote.path)
            if row is not None and row.state == "forgotten":
                ready.append(remote)  # deleted from the library on purpose
                continue
            here = localfs.local_size(local_path(self.container_dir, remote.path))
            if row is None or row.state != "synced" or here is None or here[0] != row.size:
                self.log.warning(
                    "file_kept", path=display(remote.path), reason="local_copy_differs"
                )
                continue
            ready.append(remote)
        for folder in {os.path.dirname(local_path(self.container_dir, f.path)) for f in ready}:
            if os.path.isdir(folder):  # a forgotten file's folder may be gone too
                localfs.fsync_folder(folder)
        # Announced first: a crash after the delete and before its record is reconciled by
        # the next cleanup instead of losing the purge.
        self.manifest.record_purge_intents(name, [(f.path, f.size, f.mtime_ns) for f in ready])
        deleted = self.remote.delete(ready)
        gone = [remote for remote in ready if remote.path in deleted]
        events = [records.file_purged(name, self.run_id, f.path, f.size) for f in gone]
        self.manifest.record_purged(
            name, [f.path for f in gone], events, settled=[f.path for f in ready]
        )
        progress = self.ctx.progress
        for remote in gone:
            self.outcome.files += 1
            self.outcome.bytes += remote.size
            progress.file_done()
            progress.record_purged(remote.size)
            self.log.info("file_purged", path=display(remote.path), bytes=remote.size)
        for remote in ready:
            if remote.path not in deleted:
                self.log.info("file_kept", path=display(remote.path), reason="changed_on_remote")


def cleanup_container(
    ctx: JobContext, dry_run: bool | None = None, only: list[RemoteFile] | None = None
) -> RunOutcome:
    """Run one cleanup of `ctx.container` and record it; return the outcome (failures are in
    it, logged and classified). `dry_run` overrides the config's `cleanup.dry_run`; `only`
    purges exactly those files (a drain), each still re-checked before it goes.

    Nothing is purged while the container's last sync failed, as the manifest records it
    (`rules.held_back`), so the rule holds after a restart too: the cleanup is then skipped
    (a failure of kind `sync_failing`, not recorded as a run)."""
    container = ctx.container
    if held_back(ctx.manifest.last_result(container.name, "sync")):
        skipped = RunOutcome(error="skipped: the last sync of this container failed")
        skipped.result = "failure"
        skipped.error_kinds.add(ErrorKind.SYNC_FAILING)
        return skipped
    dry = container.cleanup.dry_run if dry_run is None else dry_run
    return run_job(
        "cleanup",
        container.name,
        ctx.manifest,
        lambda log, run_id: CleanupRun(ctx, dry, log, run_id, only).run(),
    )
