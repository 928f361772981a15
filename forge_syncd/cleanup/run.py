"""One cleanup run of one container: list, decide (`rules.py`), re-check, fsync, delete in
batches, record. The container is reached only through its `Transport`."""

from __future__ import annotations

import os
from typing import Any

from forge_syncd.cleanup.rules import (
    Action,
    Decision,
    MirrorCheck,
    PurgePolicy,
    held_back,
    select_purgeable,
    settle_intents,
)
from forge_syncd.control.messages import ReasonCount
from forge_syncd.errorkinds import ErrorKind
from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.outcome import CleanupReport
from forge_syncd.jobs.record import JobContext, RunOutcome, run_job
from forge_syncd.library import events as records
from forge_syncd.library import localfs
from forge_syncd.library.copies import CheckedCopies, local_state
from forge_syncd.library.hashing import file_sha256
from forge_syncd.library.safety import DURABLE, CopyRules, CopyStatus, FoundCopies, copy_status
from forge_syncd.paths import display, local_path
from forge_syncd.remote.types import RemoteFile

BATCH = 500


def kept_by_reason(decisions: list[Decision]) -> list[ReasonCount]:
    """Given a run's decisions, return what it keeps, by reason: `[{"reason", "files",
    "bytes"}]`, the most files first (`too_young`: newer than `older_than`)."""
    kept: dict[str, list[int]] = {}
    for decision in decisions:
        if decision.action == Action.KEEP:
            counts = kept.setdefault(decision.reason, [0, 0])
            counts[0] += 1
            counts[1] += decision.file.size
    ordered = sorted(kept.items(), key=lambda item: (-item[1][0], item[0]))
    return [{"reason": r, "files": n, "bytes": b} for r, (n, b) in ordered]


class CleanupRun:
    """The I/O of one cleanup run of one container."""

    def __init__(
        self,
        ctx: JobContext,
        dry_run: bool,
        log: Any,
        run_id: str,
        only: list[Decision] | None = None,
    ) -> None:
        """`only`: purge exactly these files (a drain's verified ones, with the sha256 both
        ends had), re-checked as any purge is, instead of deciding by the cleanup rules
        (None)."""
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
        decisions = self.only if self.only is not None else self._decide()
        self.outcome.cleanup = CleanupReport(
            self.dry_run,
            [d.as_dict() for d in decisions if d.reason != "too_young"],
            kept_by_reason(decisions),
            self.container.cleanup.older_than_s,
        )
        for decision in decisions:
            if decision.action == Action.KEEP and decision.reason != "too_young":
                self.log.info(
                    "file_kept",
                    path=display(decision.file.path),
                    bytes=decision.file.size,
                    reason=decision.reason,
                )
        purge = [d for d in decisions if d.action == Action.PURGE]
        if self.dry_run:
            for decision in purge:
                remote = decision.file
                self.log.info(
                    "file_would_purge", path=display(remote.path), bytes=remote.size, dry_run=True
                )
            return self.outcome
        progress = self.ctx.progress
        progress.begin("cleanup", len(purge), sum(d.file.size for d in purge), self.run_id)
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
        rules = CopyRules.of(self.container)
        rows = self.manifest.files.records(self.container.name)
        local = local_state(self.container_dir, listing.files, rules.scope)
        return select_purgeable(
            listing.files,
            rows,
            FoundCopies(local),
            self.remote.probe().clock.now_ns(),
            rules,
            PurgePolicy.of(self.container, mirror_check_of(self.ctx)),
            lambda path: file_sha256(local_path(self.container_dir, path)),
        )

    def _reconcile(self, files: list[RemoteFile]) -> None:
        """Record the purges a crash left unrecorded (`rules.settle_intents`), with their
        events, now."""
        intents = self.manifest.files.purge_intents(self.container.name)
        if not intents:
            return
        listed = {f.path: (f.size, f.mtime_ns) for f in files}
        gone, changed = settle_intents(intents, listed)
        name = self.container.name
        events = [records.file_purged(name, self.run_id, path, intents[path][0]) for path in gone]
        self.manifest.files.record_purged(name, gone, events, settled=changed)
        for path in gone:
            self.outcome.files += 1
            self.outcome.bytes += intents[path][0]
            self.log.info("file_purged", path=display(path), bytes=intents[path][0], recovered=True)

    def _purge_batch(self, batch: list[Decision]) -> None:
        """Re-check the local copies, make them durable, delete remotely (each only while
        its bytes are the library copy's), record."""
        name = self.container.name
        rows = self.manifest.files.records(name)
        ready: list[RemoteFile] = []
        expected: dict[bytes, str] = {}
        copies = CheckedCopies(self.container_dir, {}, set())  # looked up (lstat) now
        rules = CopyRules.of(self.container)
        now_ns = self.remote.probe().clock.now_ns()
        for decision in batch:
            remote, row = decision.file, rows.get(decision.file.path)
            if decision.sha256 is None:
                continue  # no bytes to compare with: never purged (rules never decide so)
            status = copy_status(remote, row, copies, now_ns, rules)
            if status not in DURABLE:
                self.log.warning("file_kept", path=display(remote.path), reason=status.value)
                continue
            ready.append(remote)
            expected[remote.path] = decision.sha256
        for folder in {os.path.dirname(local_path(self.container_dir, f.path)) for f in ready}:
            if os.path.isdir(folder):  # a forgotten file's folder may be gone too
                localfs.fsync_folder(folder)
        # Announced first: a crash after the delete and before its record is reconciled by
        # the next cleanup instead of losing the purge.
        self.manifest.files.record_purge_intents(
            name, [(f.path, f.size, f.mtime_ns) for f in ready]
        )
        deleted = self.remote.delete(ready, expected)
        gone = [remote for remote in ready if remote.path in deleted.gone]
        if deleted.differs:
            # Other bytes under the same size and mtime (rewritten in place within the
            # mtime's resolution): keep them, and have the next sync fetch them (the library
            # copy moves into .versions/).
            self.manifest.files.mark_recheck(name, deleted.differs)
        events = [records.file_purged(name, self.run_id, f.path, f.size) for f in gone]
        self.manifest.files.record_purged(
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
            if remote.path in deleted.differs:
                self.log.warning(
                    "file_kept",
                    path=display(remote.path),
                    bytes=remote.size,
                    reason=CopyStatus.BYTES_DIFFER.value,
                    error="the container's file has other bytes than the library copy under"
                    " the same size and mtime: kept, and fetched by the next sync",
                )
            elif remote.path not in deleted.gone:
                self.log.info(
                    "file_kept", path=display(remote.path), reason=CopyStatus.CHANGED.value
                )


def mirror_check_of(ctx: JobContext) -> MirrorCheck | None:
    """Return how to ask the mirror `cleanup.require_mirror` names whether it holds a file
    (from its sink's state beside the manifest), or None without one."""
    wanted = ctx.container.cleanup.require_mirror
    if wanted is None:
        return None
    from forge_syncd.events.sinks.mirror.holds import mirror_check

    return mirror_check(ctx.manifest.path.parent, wanted, ctx.container.name)


def cleanup_container(
    ctx: JobContext,
    dry_run: bool | None = None,
    only: list[Decision] | None = None,
    trigger: str | None = None,
) -> RunOutcome:
    """Run one cleanup of `ctx.container` and record it; return the outcome (failures are in
    it, logged and classified). `dry_run` overrides the config's `cleanup.dry_run`; `only`
    purges exactly those files (a drain), each still re-checked before it goes.

    Nothing is purged while the container's last sync failed, as the manifest records it
    (`rules.held_back`), so the rule holds after a restart too: the cleanup is then skipped
    (a failure of kind `sync_failing`, not recorded as a run). `trigger`: what started it
    (manifest.TRIGGERS)."""
    container = ctx.container
    if held_back(ctx.manifest.runs.last_result(container.name, Job.SYNC)):
        skipped = RunOutcome(error="skipped: the last sync of this container failed")
        skipped.result = RunResult.FAILURE
        skipped.error_kinds.add(ErrorKind.SYNC_FAILING)
        return skipped
    dry = container.cleanup.dry_run if dry_run is None else dry_run
    return run_job(
        Job.CLEANUP,
        container.name,
        ctx.manifest,
        lambda log, run_id: CleanupRun(ctx, dry, log, run_id, only).run(),
        trigger,
        dry,
    )
