"""One sync run of one container: list, plan, fetch, land — the I/O around the rules.

The rules it applies live apart, each testable without SSH: what to fetch (`plan.py`), when
a remembered plan may be reused (`memo.py`), when a fetched file counts as verified
(`verify.py`); landing and recording files is `commit.py`; the container is reached only
through its `Transport` (`forge_syncd/remote/transport.py`), which alone picks the fast path or
its fallback.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from forge_syncd.errorkinds import ErrorKind, FileKind
from forge_syncd.jobs.kinds import Job
from forge_syncd.jobs.outcome import AtRisk, SyncReport
from forge_syncd.jobs.record import JobContext, RunFailed, RunOutcome, run_job
from forge_syncd.library import events as records
from forge_syncd.library import localfs, modes
from forge_syncd.library.copies import CheckedCopies, LocalCheck
from forge_syncd.library.hashing import file_sha256
from forge_syncd.library.manifest import FileState, SyncedFile
from forge_syncd.library.prune import Pruner
from forge_syncd.library.safety import copy_intact
from forge_syncd.library.versions import Versions
from forge_syncd.mtimes import FUTURE_SLACK_NS, MTIME_OUT_OF_RANGE, NS, settled_by
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import Scope
from forge_syncd.remote.errors import AuthError, ConnectError, HostKeyError
from forge_syncd.remote.types import (
    FetchCallbacks,
    FetchItem,
    Listing,
    ListingMethod,
    RemoteFile,
    Skipped,
    refused_media,
)
from forge_syncd.sync.commit import Committer
from forge_syncd.sync.memo import ListingMemo, listing_digest, memo_for, memo_holds
from forge_syncd.sync.plan import SkipReason, SyncPlan, plan_sync

DISK_RESERVE = 64 * 1024 * 1024  # never fill the library's disk to the last byte
INODE_RESERVE = 1000  # nor use its last inodes


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
        self.committer = Committer(
            ctx, log, run_id, self.outcome, self.versions, self.remote_hashes
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
        check = LocalCheck(self.manifest, self.container.name, self.container_dir)
        memo = self.state.listing_memo
        digest = bytearray()

        def reuse(output: bytes) -> bool:
            digest[:] = listing_digest(output)
            mismatched = lambda: check.wait().mismatched  # noqa: E731 - only if needed
            if memo_holds(memo, output, bytes(digest), self.container, check.version, mismatched):
                return True
            self.remote.prepare_fetch()  # something may need fetching: start it while we plan
            return False

        try:
            self._sync(self._list(reuse), memo, check, bytes(digest))
        finally:
            self.remote.end_run(self.state.keep_fetch_ready)
        Pruner(self.versions).prune(self.container.sync.keep_versions_s)
        return self.outcome

    def _sync(
        self, listing: Listing, memo: ListingMemo | None, check: LocalCheck, digest: bytes
    ) -> None:
        report = self.outcome.sync = SyncReport(listing.method, listing.reused)
        if listing.reused and memo is not None:
            self._log_skipped(memo.skipped, memo.plan_skipped)
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
        """Sync the files a live watcher reported complete: their manifest rows and local
        copies only, no listing; only those a listing would hold (inside `folders`, wanted
        by include/exclude). A file the plan finds unchanged costs nothing."""
        report = self.outcome.sync = SyncReport(ListingMethod.WATCH)
        sync = self.container.sync
        scope = Scope.of(self.container)
        wanted = [f for f in files if scope.holds(f.path)]
        self.log.debug("watch_sync", paths=[display(f.path) for f in wanted[:100]])
        if not wanted:
            return
        self.remote.prepare_fetch()  # its shell starts while the plan is made
        records = self.manifest.files.records_at(self.container.name, [f.path for f in wanted])
        base = self.container_dir + b"/"
        mismatched = {
            path
            for path, record in records.items()
            if record.state == FileState.SYNCED
            and not copy_intact(record, localfs.local_size(base + path))
        }
        clock = self.remote.probe().clock
        now_ns = clock.now_ns()
        plan = plan_sync(
            wanted,
            records,
            CheckedCopies(self.container_dir, records, mismatched),
            None,
            now_ns,
            # The watcher saw them complete: ready, unless far ahead of the container's
            # clock (then the two-look rule for files from the future applies).
            -FUTURE_SLACK_NS,
            sync.max_file_size,
            forget=sync.on_local_delete == "forget",
            seen_future=self.state.future_seen,
        )
        self._log_skipped((), plan.skipped)
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
            self._check_space(plan.fetch)
            if self.container.sync.verify == "sha256" and (plan.fetch or plan.adopt):
                self.remote_hashes.update(
                    self.remote.hashes([f.path for f in plan.fetch + plan.adopt])
                )
            fetch = [*plan.fetch, *self._adopt(plan.adopt)]
            report.not_copied = not_copied(plan.skipped, refused)
            settling = [remote for remote, reason in plan.skipped if reason == SkipReason.SETTLING]
            waiting = [*fetch, *settling]
            if full:
                report.planned = (len(waiting), sum(f.size for f in waiting))
                report.settling = settling  # live mode syncs them once settled
            progress = self.ctx.progress
            progress.begin("sync", len(fetch), sum(f.size for f in fetch), self.run_id)
            try:
                self._fetch(fetch, report)
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
        self._log_skipped(listing.skipped, ())
        return listing

    def _log_skipped(
        self, listed: Iterable[Skipped], planned: Iterable[tuple[RemoteFile, SkipReason]]
    ) -> None:
        for skipped in listed:
            level = self.log.warning if skipped.reason == MTIME_OUT_OF_RANGE else self.log.info
            level("file_skipped", path=display(skipped.path), reason=skipped.reason)
        for remote, reason in planned:
            if reason == SkipReason.MTIME_IN_FUTURE:
                self.log.warning(
                    "file_skipped",
                    path=display(remote.path),
                    bytes=remote.size,
                    reason=reason,
                    error="its mtime is ahead of the container's clock (the clock or the"
                    " file's time is off): synced once two looks see it unchanged",
                )
                continue
            level = self.log.warning if reason == SkipReason.TOO_LARGE else self.log.info
            level("file_skipped", path=display(remote.path), bytes=remote.size, reason=reason)

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
        self._log_skipped((), plan.skipped)
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

    def _check_space(self, fetch: list[RemoteFile]) -> None:
        """Raise DiskFull unless the library's filesystem has room for `fetch`: bytes and
        inodes (each file takes one; many small files can run out of inodes first)."""
        if not fetch:
            return
        needed = sum(f.size for f in fetch)
        free = localfs.free_bytes(self.container_dir)
        if needed + DISK_RESERVE > free:
            raise DiskFull(
                f"{needed} bytes to fetch but only {free} free at "
                f"{display(self.container_dir)} (keeping {DISK_RESERVE} in reserve)"
            )
        inodes = localfs.free_inodes(self.container_dir)
        if inodes is not None and len(fetch) + INODE_RESERVE > inodes:
            raise DiskFull(
                f"{len(fetch)} files to fetch but only {inodes} free inodes at "
                f"{display(self.container_dir)} (keeping {INODE_RESERVE} in reserve)"
            )

    def _adopt(self, candidates: list[RemoteFile]) -> list[RemoteFile]:
        """Record matching local copies without fetching; return those that need a fetch."""
        adopted: list[SyncedFile] = []
        refetch: list[RemoteFile] = []
        earliest_now = self.remote.probe().clock.surely_passed_ns()
        for remote in candidates:
            digest = file_sha256(local_path(self.container_dir, remote.path))
            if digest is None or (
                self.container.sync.verify == "sha256"
                and digest != self.remote_hashes.get(remote.path)
            ):
                refetch.append(remote)
                continue
            racy = not settled_by(remote.mtime_ns, earliest_now)
            adopted.append(SyncedFile(remote.path, remote.size, remote.mtime_ns, digest, racy))
        if adopted:
            name = self.container.name
            events = [
                records.file_synced(name, self.run_id, self.container_dir, f, True) for f in adopted
            ]
            self.manifest.files.record_synced(name, adopted, events)
            self.committer.landed.update(synced.path for synced in adopted if not synced.racy)
            for synced in adopted:
                self.log.info("file_adopted", path=display(synced.path), bytes=synced.size)
        return refetch

    def _fetch(self, files: list[RemoteFile], report: SyncReport) -> None:
        if not files:
            return
        items = []
        folders: dict[bytes, str | None] = {}  # each folder checked once, not once per file
        for remote in files:
            target = local_path(self.container_dir, remote.path)
            folder = os.path.dirname(target)
            if folder not in folders:
                folders[folder] = self._make_folder(folder)
            problem = folders[folder]
            if problem is not None:
                self.committer.fail_file(remote.path, problem, FileKind.TRANSFER)
                continue
            items.append(FetchItem(remote, target))
        worker = threading.Thread(
            target=self._transfer,
            args=(items, report),
            name=f"fetch-{self.container.name}",
            daemon=True,
        )
        worker.start()
        self.committer.run(worker)
        if self.outcome.failed_files or self.outcome.error or self.outcome.cancelled:
            removed = localfs.remove_own_temp_files(list(folders))
            if removed:
                self.log.info("temp_files_removed", count=removed)

    def _make_folder(self, folder: bytes) -> str | None:
        """Create a file's folder, first moving into `.versions/` any file that stands
        where one of its folders must be (a remote file replaced by a folder); return why
        it cannot be made, or None."""
        try:
            localfs.ensure_folder(self.container_dir, folder)
            return None
        except OSError:
            pass
        except ValueError as exc:
            return f"cannot create its folder: {exc}"
        try:
            moves = self.versions.make_way_for_folder(folder)
            self.versions.finish(moves)
            self.outcome.versions += len(moves)
            localfs.ensure_folder(self.container_dir, folder)
        except (OSError, ValueError) as exc:
            return f"cannot create its folder: {exc}"
        return None

    def _transfer(self, items: list[FetchItem], report: SyncReport) -> None:
        """The transfer thread: fetch through the Transport (which picks tar or SFTP and falls
        back from a broken tar stream). A crash of the transfer fails the run instead of
        vanishing."""
        progress = self.ctx.progress
        try:
            calls = FetchCallbacks(
                self.committer.on_fetched,
                progress.add_bytes,
                lambda item: progress.file_started(display(item.remote.path)),
                lambda item: progress.file_done(item.remote.path),
            )
            fetched = self.remote.fetch(items, calls, self.ctx.cancel)
            report.transfer = fetched.transfer
            for name, reason in fetched.refused:
                self.log.warning("tar_member_refused", path=display(name), reason=reason)
            if fetched.fallback:
                self.log.warning(
                    "tar_fallback", files=fetched.fallback, error=fetched.fallback_reason[:300]
                )
        except Exception as exc:
            # A reconnect refused mid-run (the container went away) keeps its kind, so the
            # container shows as unreachable rather than as a transfer error.
            kind = ErrorKind.TRANSFER
            if isinstance(exc, ConnectError | AuthError | HostKeyError):
                kind = exc.kind
            self.outcome.error_kinds.add(kind)
            self.outcome.error = f"transfer failed: {type(exc).__name__}: {exc}"
            self.log.error("transfer_crashed", error=self.outcome.error)


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
