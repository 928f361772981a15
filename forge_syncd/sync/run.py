"""One sync run of one container: list, plan, fetch, land — the I/O around the rules.

The rules it applies live apart, each testable without SSH: what to fetch (`plan.py`), when
a remembered plan may be reused (`memo.py`), when a fetched file counts as verified
(`verify.py`). Adopting and fetching is `fetch.py`, landing and recording files `commit.py`,
the plan for the files a live watcher reported `changed.py`. The container is reached only
through its `Transport` (`forge_syncd/remote/transport.py`), which alone picks the fast path
or its fallback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from forge_syncd.errorkinds import ErrorKind
from forge_syncd.jobs.kinds import Job
from forge_syncd.jobs.outcome import AtRisk, SyncReport
from forge_syncd.jobs.record import JobContext, RunFailed, RunOutcome, run_job
from forge_syncd.library import localfs, modes
from forge_syncd.library.copies import CheckedCopies, LocalCheck
from forge_syncd.library.dedupe import Sharer
from forge_syncd.library.prune import Pruner
from forge_syncd.library.space import no_room
from forge_syncd.library.versions import Versions
from forge_syncd.mtimes import MTIME_OUT_OF_RANGE, NS
from forge_syncd.paths import display
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import (
    Listing,
    ListingMethod,
    RemoteFile,
    Skipped,
    refused_media,
)
from forge_syncd.sync.changed import plan_changed
from forge_syncd.sync.commit import Committer
from forge_syncd.sync.fetch import Fetcher
from forge_syncd.sync.memo import ListingMemo, listing_digest, memo_for, memo_holds
from forge_syncd.sync.plan import SkipReason, SyncPlan, plan_sync
from forge_syncd.sync.shortcut import local_sources


class DiskFull(RunFailed):
    kind = ErrorKind.DISK_FULL


@dataclass
class SyncState:
    """What one container's sync runs remember between runs; owned by its runner."""

    listing_memo: ListingMemo | None = None  # the last run's plan, when it had nothing to do
    temp_files_checked: bool = False  # leftovers of a crash removed (once per process)
    future_seen: dict[bytes, tuple[int, int]] | None = None  # None: not read from the manifest
    # Live mode is watching: keep the next fetch's remote shell started between runs (a
    # watcher's run then starts streaming one round trip after it begins, not three).
    keep_fetch_ready: bool = False


def not_copied(
    skipped: Iterable[tuple[RemoteFile, SkipReason]], refused: Iterable[RemoteFile]
) -> dict[str, list[int]]:
    """Given the plan's skipped files (with their reason: `settling`, `too_large`,
    `mtime_in_future`) and the wanted files the listing refused (`refused`), return
    {reason: [files, bytes]}: what this run left on the container, and why."""
    counts: dict[str, list[int]] = {}
    reasons: list[tuple[RemoteFile, str]] = [*skipped, *((r, "refused") for r in refused)]
    for remote, reason in reasons:
        entry = counts.setdefault(reason, [0, 0])
        entry[0] += 1
        entry[1] += remote.size
    return counts


def log_skipped(
    log: Any, listed: Iterable[Skipped], planned: Iterable[tuple[RemoteFile, SkipReason]]
) -> None:
    """Log each file the listing skipped (`listed`) and each the plan left for now
    (`planned`), as `file_skipped` with its reason."""
    for skipped in listed:
        level = log.warning if skipped.reason == MTIME_OUT_OF_RANGE else log.info
        level("file_skipped", path=display(skipped.path), reason=skipped.reason)
    for remote, reason in planned:
        if reason == SkipReason.MTIME_IN_FUTURE:
            log.warning(
                "file_skipped",
                path=display(remote.path),
                bytes=remote.size,
                reason=reason,
                error="its mtime is ahead of the container's clock (the clock or the"
                " file's time is off): synced once two looks see it unchanged",
            )
            continue
        level = log.warning if reason == SkipReason.TOO_LARGE else log.info
        level("file_skipped", path=display(remote.path), bytes=remote.size, reason=reason)


class SyncRun:
    """The I/O of one sync run of one container."""

    def __init__(
        self,
        ctx: JobContext,
        state: SyncState,
        log: Any,
        run_id: str,
        changed: list[RemoteFile] | None = None,
    ) -> None:
        """`changed`: complete files a live watcher reported (`live/changes.py`); the run
        then syncs only those, without a listing (None: a full run)."""
        self.ctx = ctx
        self.changed = changed
        self.container = ctx.container
        self.container_dir = ctx.container_dir
        self.manifest = ctx.manifest
        self.remote = ctx.remote
        self.state = state
        self.log = log
        self.run_id = run_id
        self.outcome = RunOutcome()
        self.remote_hashes: dict[bytes, str] = {}
        self.versions = Versions(ctx.manifest, ctx.container.name, self.container_dir, run_id, log)
        self.sharer = Sharer(ctx.manifest, ctx.media_root, log)
        self.committer = Committer(
            ctx, log, run_id, self.outcome, self.versions, self.remote_hashes, self.sharer
        )
        self.fetcher = Fetcher(
            ctx, log, run_id, self.outcome, self.versions, self.committer, self.remote_hashes
        )

    def run(self) -> RunOutcome:
        """Run the whole sync; return its outcome. Raise RunFailed or RemoteError."""
        modes.make_folders(os.path.dirname(self.container_dir), self.container_dir)
        if not self.state.temp_files_checked:
            removed = localfs.remove_stale_temp_files(self.container_dir)
            self.state.temp_files_checked = True
            if removed:
                self.log.info("stale_temp_files_removed", count=removed)
        self.outcome.versions += self.versions.recover()
        if self.state.future_seen is None:  # the first run of this process: as recorded
            self.state.future_seen = self.manifest.files.future(self.container.name)
        if self.changed is not None:
            try:
                self._sync_changed(self.changed)
            finally:
                self.remote.end_run(self.state.keep_fetch_ready)
            Pruner(self.versions).prune(self.container.sync.keep_versions_s)
            return self.outcome
        memo = self.state.listing_memo
        check = LocalCheck(self.manifest, self.container.name, self.container_dir, memo is None)
        digest = bytearray()

        def reuse(output: bytes) -> bool:
            digest[:] = listing_digest(output)
            mismatched = lambda: check.wait().mismatched  # noqa: E731 - only if needed
            if memo_holds(memo, output, bytes(digest), self.container, check.version, mismatched):
                check.skip_rows()
                return True
            check.want_rows()  # read while the listing is parsed
            self.remote.prepare_fetch()  # something may need fetching: start it while we plan
            return False

        try:
            self._sync(self._list(reuse), memo, check, bytes(digest))
        finally:
            check.skip_rows()  # its thread ends (a run that failed before planning)
            self.remote.end_run(self.state.keep_fetch_ready)
        Pruner(self.versions).prune(self.container.sync.keep_versions_s)
        return self.outcome

    def _sync(
        self, listing: Listing, memo: ListingMemo | None, check: LocalCheck, digest: bytes
    ) -> None:
        report = self.outcome.sync = SyncReport(listing.method, listing.reused)
        if listing.reused and memo is not None:
            log_skipped(self.log, memo.skipped, memo.plan_skipped)
            self.outcome.remote_files = memo.remote_files
            self.outcome.remote_bytes = memo.remote_bytes
            plan = SyncPlan(skipped=list(memo.plan_skipped))  # too large: still remote-only
            skipped: Iterable[Skipped] = memo.skipped
        else:
            plan = self._plan(listing, check.copies(), report)
            self.outcome.remote_files = len(plan.wanted)
            self.outcome.remote_bytes = sum(f.size for f in plan.wanted)
            self.state.listing_memo = memo_for(listing, plan, digest, self.container, check.version)
            skipped = listing.skipped
        scope = Scope.of(self.container)
        now_ns = self.remote.probe().clock.now_ns()
        refused = [f for f in refused_media(skipped, now_ns) if scope.wants(f.path)]
        self._carry_out(plan, report, refused=refused)

    def _sync_changed(self, files: list[RemoteFile]) -> None:
        """Sync the files a live watcher reported complete (`changed.py`)."""
        report = self.outcome.sync = SyncReport(ListingMethod.WATCH)
        plan = plan_changed(self.ctx, files, self.state.future_seen, self.log)
        if plan is not None:
            log_skipped(self.log, (), plan.skipped)
            self._carry_out(plan, report, full=False)

    def _carry_out(
        self,
        plan: SyncPlan,
        report: SyncReport,
        full: bool = True,
        refused: Iterable[RemoteFile] = (),
    ) -> None:
        """Forget, adopt and fetch what `plan` says, and say so in `report`. `full`: the plan
        covers the whole container (its pending figures are the container's); `refused`:
        wanted regular files the listing refused (never synced: at risk all the same)."""
        self._forget(plan)
        # Media at risk: wanted files with no durable library copy, until this run lands them.
        at_risk = {
            f.path: f for f in (*plan.fetch, *plan.adopt, *(r for r, _ in plan.skipped), *refused)
        }
        scope = None if full else frozenset(f.path for f in plan.wanted)
        try:
            size = sum(f.size for f in plan.fetch)
            if plan.fetch and (problem := no_room(self.container_dir, len(plan.fetch), size)):
                raise DiskFull(problem)
            if self.container.sync.verify == "sha256" and (plan.fetch or plan.adopt):
                self.remote_hashes.update(
                    self.remote.hashes([f.path for f in plan.fetch + plan.adopt])
                )
            fetch = [*plan.fetch, *self.fetcher.adopt(plan.adopt)]
            self.fetcher.local_sources = local_sources(self.ctx, self.sharer, self.log, fetch)
            report.not_copied = not_copied(plan.skipped, refused)
            settling = [remote for remote, reason in plan.skipped if reason == SkipReason.SETTLING]
            waiting = [*fetch, *settling]
            if full:
                report.planned = (len(waiting), sum(f.size for f in waiting))
                report.settling = settling  # live mode syncs them once settled
            progress = self.ctx.progress
            progress.begin("sync", len(fetch), sum(f.size for f in fetch), self.run_id)
            try:
                self.fetcher.fetch(fetch, report)
            finally:
                progress.end()
        finally:
            for path in self.committer.landed:
                at_risk.pop(path, None)
            report.at_risk = AtRisk(at_risk, scope)
            if self.committer.deferred:  # changed or vanished while fetched: the next run's
                report.not_copied["deferred"] = [self.committer.deferred, 0]

    def _list(self, reuse: Any) -> Listing:
        listing = self.remote.list(reuse, self.ctx.cancel)
        for warning in listing.warnings:
            self.log.warning("listing_warning", error=warning)
        log_skipped(self.log, listing.skipped, ())
        return listing

    def _plan(self, listing: Listing, local: CheckedCopies, report: SyncReport) -> SyncPlan:
        sync = self.container.sync
        scope = Scope.of(self.container)
        wanted = [remote for remote in listing.files if scope.wants(remote.path)]
        clock = self.remote.probe().clock
        now_ns = clock.now_ns()
        plan = plan_sync(
            wanted,
            local.records,
            local,
            None,
            now_ns,
            int(sync.settle_s * NS),
            sync.max_file_size,
            forget=sync.on_local_delete == "forget",
            seen_future=self.state.future_seen,
        )
        if plan.future or self.state.future_seen:
            self.manifest.files.set_future(self.container.name, plan.future)
        self.state.future_seen = plan.future
        log_skipped(self.log, (), plan.skipped)
        return plan

    def _forget(self, plan: SyncPlan) -> None:
        """Record the synced files the user deleted from the library as forgotten."""
        if plan.forget_suspended:
            self.log.warning(
                "forget_suspended",
                files=plan.forget_suspended,
                error="too many library copies missing at once to forget them (is the library"
                " mounted?): fetching them again",
            )
        if not plan.forget:
            return
        self.manifest.files.record_forgotten(self.container.name, [f.path for f in plan.forget])
        for remote in plan.forget:
            self.log.info("file_forgotten", path=display(remote.path), bytes=remote.size)


def sync_container(
    ctx: JobContext,
    state: SyncState | None = None,
    changed: list[RemoteFile] | None = None,
    trigger: str | None = None,
) -> RunOutcome:
    """Run one sync of `ctx.container` and record it; return the outcome (never raises for
    remote or local failures: they are in it, logged and classified). `state`: what the
    container's earlier runs in this process remember (its runner's), else a fresh one;
    `changed`: only these files, which a live watcher reported complete (None: all);
    `trigger`: what started it (manifest.TRIGGERS)."""
    kept = state if state is not None else SyncState()
    return run_job(
        Job.SYNC,
        ctx.container.name,
        ctx.manifest,
        lambda log, run_id: SyncRun(ctx, kept, log, run_id, changed).run(),
        trigger,
    )
