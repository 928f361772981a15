"""Drain: is it safe to destroy this rented box? A final sync, then sha256 on both ends of
every remote file in scope; `--purge` then deletes every verified remote file.

`judge` is the rule (pure): a remote file is safe only when the manifest records it synced
with the size and mtime the container reports now, its library copy exists with that size,
and the two sha256 agree — whatever include/exclude and max_file_size say now (a file copied
before they changed is as safe as any). Everything else present on the container is listed
with why it is not safe. `drain_container` is the I/O around it: the sync and the purge are
ordinary, recorded runs (history, metrics, events); the purge goes through cleanup's own batches
(`cleanup/run.py`), so its re-checks, intents and records are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forge_syncd.cleanup.rules import PURGE, Decision
from forge_syncd.cleanup.run import cleanup_container
from forge_syncd.errorkinds import CONNECTION
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library import localfs
from forge_syncd.library.hashing import file_sha256
from forge_syncd.logs import get_logger
from forge_syncd.manifest import FileRecord
from forge_syncd.mtimes import NS, same_mtime
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import FileFilter, any_matches
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import RemoteFile, Skipped
from forge_syncd.sync.run import SyncState, sync_container
from forge_syncd.text import plural

# Why a file present on the container is not safe to lose (stable strings: the JSON says them).
EXCLUDED = "excluded by include/exclude, but present"
TOO_LARGE = "larger than max_file_size: never synced"
WRITING = "still being written (modified within settle)"
NOT_SYNCED = "not synced"
MISSING = "missing locally"
CHANGED = "changed on the container since it was synced"
DIFFERS = "the library copy's sha256 differs"
UNHASHED = "its sha256 could not be computed on the container"
UNCONFIRMED = "its library copy may hold older bytes: the next sync fetches it again"
MAX_LISTED = 1000  # unsafe files listed in a report (all are counted)


@dataclass
class DrainReport:
    """What a drain found; `safe` only when every file in scope is verified."""

    container: str
    verified: list[RemoteFile] = field(default_factory=list)
    sha256: dict[bytes, str] = field(default_factory=dict)  # of each verified file
    unsafe: list[tuple[bytes, str]] = field(default_factory=list)
    sizes: dict[bytes, int] = field(default_factory=dict)  # of every file listed
    error: str | None = None
    sync: RunOutcome | None = None
    purge: RunOutcome | None = None

    @property
    def safe(self) -> bool:
        return self.error is None and not self.unsafe

    def as_dict(self) -> dict[str, Any]:
        purge = self.purge
        return {
            "container": self.container,
            "safe": self.safe,
            "files": len(self.verified),
            "bytes": sum(f.size for f in self.verified),
            "unsafe_count": len(self.unsafe),
            "unsafe": [
                {"path": display(path), "reason": reason, "size": self.sizes.get(path)}
                for path, reason in self.unsafe[:MAX_LISTED]
            ],
            "error": self.error,
            "sync": None if self.sync is None else self.sync.result,
            "purged": None
            if purge is None
            else {
                "result": purge.result,
                "files": purge.files,
                "bytes": purge.bytes,
                "error": purge.error,
            },
        }


def judge(
    files: Iterable[RemoteFile],
    skipped: Iterable[Skipped],
    wants: FileFilter,
    records: Mapping[bytes, FileRecord],
    local_sizes: Mapping[bytes, int | None],
    hashes: Mapping[bytes, tuple[str | None, str | None]],
    now_ns: int,
    settle_ns: int,
    max_size: int,
) -> tuple[list[RemoteFile], list[tuple[bytes, str]]]:
    """Given the container's listing (files and what it refused), the filter, the manifest
    rows, the library copies' sizes, the (local, remote) sha256 of the files that got that
    far, the remote clock and the sync's settle and max size, return (verified, unsafe with
    a reason). A file the container no longer holds by the time it was hashed is neither."""
    verified: list[RemoteFile] = []
    unsafe: list[tuple[bytes, str]] = []
    for refused in skipped:
        if refused.regular:  # symlinks, FIFOs, devices: no media to lose
            unsafe.append((refused.path, refused.reason))
    for remote in files:
        reason = _why_unsafe(remote, wants, records, local_sizes, now_ns, settle_ns, max_size)
        if reason is None:
            local, there = hashes.get(remote.path, (None, None))
            if remote.path not in hashes:
                reason = UNHASHED
            elif there is None:
                continue  # gone from the container while we hashed: nothing to lose
            elif local is None:
                reason = MISSING
            elif local != there:
                reason = DIFFERS
        if reason is None:
            verified.append(remote)
        else:
            unsafe.append((remote.path, reason))
    unsafe.sort()
    return verified, unsafe


def _why_unsafe(
    remote: RemoteFile,
    wants: FileFilter,
    records: Mapping[bytes, FileRecord],
    local_sizes: Mapping[bytes, int | None],
    now_ns: int,
    settle_ns: int,
    max_size: int,
) -> str | None:
    """Why a listed file cannot be verified, before hashing (None: it can be hashed). The
    manifest is asked first: a file it records synced as it is now has a copy to verify,
    even if include/exclude or max_file_size would not take it today."""
    record = records.get(remote.path)
    copied = record is not None and record.state == "synced"
    if not copied and not wants.wants(remote.path):
        return EXCLUDED
    if not copied and remote.size > max_size:
        return TOO_LARGE
    if record is None or record.state != "synced":
        return WRITING if remote.mtime_ns > now_ns - settle_ns else NOT_SYNCED
    if record.size != remote.size or not same_mtime(record.mtime_ns, remote.mtime_ns):
        if not wants.wants(remote.path):
            return EXCLUDED  # changed since, and no longer taken: never synced again
        if remote.size > max_size:
            return TOO_LARGE
        return WRITING if remote.mtime_ns > now_ns - settle_ns else CHANGED
    if record.recheck:
        return UNCONFIRMED
    if local_sizes.get(remote.path) != remote.size:
        return MISSING
    return None


def drain_container(ctx: JobContext, state: SyncState, purge: bool) -> DrainReport:
    """Sync `ctx.container` once more, verify every remote file in scope by sha256 on both
    ends, and with `purge` delete the verified ones (`preserve` honoured, `older_than` not).
    Return the report (never raises for the container's trouble: it is in `error`)."""
    container = ctx.container
    log = get_logger(container=container.name)
    report = DrainReport(container.name)
    report.sync = sync_container(ctx, state, trigger="drain")
    if report.sync.error_kinds & CONNECTION:
        report.error = f"the container cannot be reached: {report.sync.error}"
        return _finish(log, report)
    try:
        _verify(ctx, report)
    except RemoteError as exc:
        report.error = f"verification failed: {exc}"
        return _finish(log, report)
    if purge and report.verified and not ctx.cancel.is_set():
        chosen = [
            Decision(f, PURGE, "", report.sha256[f.path])
            for f in report.verified
            if not any_matches(container.cleanup.preserve, f.path)
        ]
        report.purge = cleanup_container(ctx, dry_run=False, only=chosen, trigger="drain")
    return _finish(log, report)


def _verify(ctx: JobContext, report: DrainReport) -> None:
    container = ctx.container
    sync = container.sync
    wants = FileFilter(sync.include, sync.exclude)
    listing = ctx.remote.list(cancel=ctx.cancel)
    records = ctx.manifest.records(container.name)
    report.sizes = {f.path: f.size for f in listing.files}
    report.sizes.update((s.path, s.size) for s in listing.skipped)
    local_sizes: dict[bytes, int | None] = {}
    for remote in listing.files:
        here = None
        if wants.wants(remote.path) or remote.path in records:
            found = localfs.local_size(local_path(ctx.container_dir, remote.path))
            here = None if found is None else found[0]
        local_sizes[remote.path] = here
    now_ns = ctx.remote.probe().clock.now_ns()
    settle_ns = int(sync.settle_s * NS)
    candidates = [
        f
        for f in listing.files
        if _why_unsafe(f, wants, records, local_sizes, now_ns, settle_ns, sync.max_file_size)
        is None
    ]
    progress = ctx.progress
    # The bar counts each file's bytes once, as its library copy is hashed (the container
    # hashes them all in one command first, shown as the current step).
    progress.begin("drain", len(candidates), sum(f.size for f in candidates))
    try:
        progress.file_started(f"sha256 of {plural(len(candidates), 'file')} on the container")
        remote_hashes = ctx.remote.hashes([f.path for f in candidates], ctx.cancel)
        hashes: dict[bytes, tuple[str | None, str | None]] = {}
        for remote in candidates:
            if ctx.cancel.is_set():
                raise RemoteError("cancelled")
            progress.file_started(display(remote.path))
            local = file_sha256(local_path(ctx.container_dir, remote.path))
            hashes[remote.path] = (local, remote_hashes.get(remote.path))
            progress.add_bytes(remote.size)
            progress.file_done()
    finally:
        progress.end()
    report.sha256 = {path: local for path, (local, _) in hashes.items() if local is not None}
    report.verified, report.unsafe = judge(
        listing.files,
        listing.skipped,
        wants,
        records,
        local_sizes,
        hashes,
        now_ns,
        settle_ns,
        sync.max_file_size,
    )


def _finish(log: Any, report: DrainReport) -> DrainReport:
    summary = report.as_dict()
    fields: dict[str, Any] = {"error": report.error} if report.error else {}
    log.info(
        "drain_finished",
        safe=report.safe,
        files=summary["files"],
        bytes=summary["bytes"],
        unsafe=summary["unsafe_count"],
        purged=0 if report.purge is None else report.purge.files,
        **fields,
    )
    return report
