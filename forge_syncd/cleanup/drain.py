"""Drain: is it safe to destroy this rented box? A final sync, then sha256 on both ends of
every remote file in scope; `--purge` then deletes every verified remote file.

`judge` is the rule (pure): a remote file is safe only when the library holds a safe copy of
it (`safety.py`: the manifest records it synced with the size and mtime the container reports
now, and its library copy exists with that size), and the two sha256 agree — whatever
include/exclude and max_file_size say now (a file copied before they changed is as safe as
any). A file deleted from the library on purpose (`on_local_delete: forget`) and unchanged
since is released: listed apart, neither safe nor unsafe. Under `cleanup.require_mirror` a
verified file is safe only once that mirror holds it too (`not_mirrored` until then). Everything
else present on the container is listed with why it is not safe.
`drain_container` is the I/O around it: the sync and the purge are ordinary, recorded runs
(history, metrics, events); the purge goes through cleanup's own batches (`cleanup/run.py`),
so its re-checks, intents and records are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forge_syncd.cleanup.rules import NOT_MIRRORED, Action, Decision, MirrorCheck
from forge_syncd.cleanup.run import cleanup_container, mirror_check_of
from forge_syncd.control.messages import DrainReportJson
from forge_syncd.errorkinds import CONNECTION
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library import events as event_records
from forge_syncd.library import localfs
from forge_syncd.library.hashing import file_sha256
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import (
    Copies,
    CopyRules,
    CopyStatus,
    FoundCopies,
    bytes_status,
    copy_status,
)
from forge_syncd.logs import get_logger
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import any_matches
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import RemoteFile, Skipped
from forge_syncd.sync.run import SyncState, sync_container
from forge_syncd.text import plural

MAX_LISTED = 1000  # unsafe files listed in a report (all are counted)


@dataclass
class DrainReport:
    """What a drain found; `safe` only when every file in scope is verified."""

    container: str
    verified: list[RemoteFile] = field(default_factory=list)
    sha256: dict[bytes, str] = field(default_factory=dict)  # of each verified file
    unsafe: list[tuple[bytes, str]] = field(default_factory=list)
    released: list[RemoteFile] = field(default_factory=list)  # deleted on purpose: not kept
    sizes: dict[bytes, int] = field(default_factory=dict)  # of every file listed
    error: str | None = None
    sync: RunOutcome | None = None
    purge: RunOutcome | None = None

    @property
    def safe(self) -> bool:
        return self.error is None and not self.unsafe

    def to_json(self) -> DrainReportJson:
        """The report as `drain` answers it (and `--json` prints it)."""
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
            "released_count": len(self.released),
            "released": [
                {"path": display(f.path), "size": f.size} for f in self.released[:MAX_LISTED]
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


@dataclass
class Judged:
    """What `judge` found: the verified files, the unsafe ones with why (sorted), and the
    released ones (deleted from the library on purpose, unchanged since: not kept)."""

    verified: list[RemoteFile] = field(default_factory=list)
    unsafe: list[tuple[bytes, str]] = field(default_factory=list)
    released: list[RemoteFile] = field(default_factory=list)


def judge(
    files: Iterable[RemoteFile],
    skipped: Iterable[Skipped],
    records: Mapping[bytes, FileRecord],
    copies: Copies,
    hashes: Mapping[bytes, tuple[str | None, str | None]],
    now_ns: int,
    rules: CopyRules,
) -> Judged:
    """Given the container's listing (files and what it refused), the manifest rows, the
    library copies, the (local, remote) sha256 of the files that got that far, the
    container's clock and the sync rules, return what is verified, what is unsafe (with a
    `safety.CopyStatus` value, or why the listing refused a regular file) and what is
    released. A file the container no longer holds by the time it was hashed is none."""
    judged = Judged()
    for refused in skipped:
        if refused.regular:  # symlinks, FIFOs, devices: no media to lose
            judged.unsafe.append((refused.path, refused.reason))
    for remote in files:
        status = copy_status(remote, records.get(remote.path), copies, now_ns, rules)
        if status is CopyStatus.SAFE:
            local, there = hashes.get(remote.path, (None, None))
            if remote.path not in hashes:
                status = CopyStatus.UNHASHED
            elif there is None:
                continue  # gone from the container while we hashed: nothing to lose
            else:
                status = bytes_status(local, there)
        if status is CopyStatus.SAFE:
            judged.verified.append(remote)
        elif status is CopyStatus.RELEASED:
            judged.released.append(remote)
        else:
            judged.unsafe.append((remote.path, status.value))
    judged.unsafe.sort()
    return judged


def wait_for_mirror(
    verified: list[RemoteFile], sha256: Mapping[bytes, str], mirrored: MirrorCheck
) -> tuple[list[RemoteFile], list[tuple[bytes, str]]]:
    """Under `cleanup.require_mirror`: given the verified files, their sha256 and how to ask
    the mirror, return (those the mirror holds too, the others as unsafe `not_mirrored`):
    a box is safe to destroy only once the mirror holds its files as well."""
    held, waiting = [], []
    for remote in verified:
        digest = sha256.get(remote.path)
        if digest is not None and mirrored(remote.path, digest):
            held.append(remote)
        else:
            waiting.append((remote.path, NOT_MIRRORED))
    return held, waiting


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
        return _finish(ctx, log, report)
    try:
        _verify(ctx, report)
        mirrored = mirror_check_of(ctx)
        if mirrored is not None:
            report.verified, waiting = wait_for_mirror(report.verified, report.sha256, mirrored)
            report.unsafe = sorted(report.unsafe + waiting)
    except RemoteError as exc:
        report.error = f"verification failed: {exc}"
        return _finish(ctx, log, report)
    if purge and report.verified and not ctx.cancel.is_set():
        chosen = [
            Decision(f, Action.PURGE, "", report.sha256[f.path])
            for f in report.verified
            if not any_matches(container.cleanup.preserve, f.path)
        ]
        report.purge = cleanup_container(ctx, dry_run=False, only=chosen, trigger="drain")
    return _finish(ctx, log, report)


def _verify(ctx: JobContext, report: DrainReport) -> None:
    rules = CopyRules.of(ctx.container)
    listing = ctx.remote.list(cancel=ctx.cancel)
    records = ctx.manifest.files.records(ctx.container.name)
    report.sizes = {f.path: f.size for f in listing.files}
    report.sizes.update((s.path, s.size) for s in listing.skipped)
    found: dict[bytes, tuple[int, int]] = {}
    for remote in listing.files:
        if rules.scope.wants(remote.path) or remote.path in records:
            here = localfs.local_size(local_path(ctx.container_dir, remote.path))
            if here is not None:
                found[remote.path] = here
    copies = FoundCopies(found)
    now_ns = ctx.remote.probe().clock.now_ns()
    candidates = [
        f
        for f in listing.files
        if copy_status(f, records.get(f.path), copies, now_ns, rules) is CopyStatus.SAFE
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
    judged = judge(listing.files, listing.skipped, records, copies, hashes, now_ns, rules)
    report.verified, report.unsafe, report.released = (
        judged.verified,
        judged.unsafe,
        judged.released,
    )


def _finish(ctx: JobContext, log: Any, report: DrainReport) -> DrainReport:
    summary = report.to_json()
    # The verdict as an event (notification sinks say it), durably in the outbox.
    ctx.manifest.outbox.record([event_records.drain_complete(summary)])
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
