"""One cleanup run of one container: purge old remote media that is safely copied.

`select_purgeable` is the pure rule of SPEC's "Cleanup semantics": a remote file may go only
when it is old enough, matches no `preserve` pattern, the manifest recorded it synced with
the (size, mtime) the remote reports now, and the local copy exists with that size (and,
under `verify: sha256`, local, remote and recorded hashes agree). Everything else old
enough is kept with its reason. `CleanupRun` does the I/O: list, hash, re-check, fsync,
delete in batches, record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from forge_syncd import localfs
from forge_syncd.config.model import ContainerConfig
from forge_syncd.events import records
from forge_syncd.manifest import FileRecord, Manifest
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import FileFilter, any_matches
from forge_syncd.progress import Progress
from forge_syncd.remote.delete import delete_with_command, delete_with_sftp
from forge_syncd.remote.hashing import remote_sha256, sftp_sha256
from forge_syncd.remote.listing import RemoteFile
from forge_syncd.remote.session import RemoteSession
from forge_syncd.runs import RunOutcome
from forge_syncd.sync import (
    NS,
    ContainerRun,
    file_sha256,
    list_container,
    local_state,
    remote_path,
    run_container_job,
    same_second,
)

BATCH = 500
PURGE = "purge"
KEEP = "keep"


@dataclass(frozen=True)
class Decision:
    file: RemoteFile
    action: str  # purge | keep
    reason: str  # "" for purge; else preserved, not_synced, changed_on_remote, ...

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": display(self.file.path),
            "size": self.file.size,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Hashes:
    """sha256 of one file's local copy and of its remote file (None: could not compute)."""

    local: str | None
    remote: str | None


def decide(
    remote: RemoteFile,
    record: FileRecord | None,
    here: tuple[int, int] | None,
    preserve: tuple[str, ...],
    cutoff_ns: int,
    hashes: Hashes | None,
    forget: bool = False,
) -> Decision:
    """Given one wanted remote file and what we know of it, return whether it may go.

    Only a current, verified row (`synced`) counts as a copy; with `forget`
    (`on_local_delete: forget`) a `forgotten` row — synced, then deleted from the library
    by the user — lets the unchanged remote file go too. Purged rows and versions never
    count. `hashes` is None under `verify: size`; under sha256 it must be given for a purge.
    """

    def keep(reason: str) -> Decision:
        return Decision(remote, KEEP, reason)

    if remote.mtime_ns > cutoff_ns:
        return keep("too_young")
    if any_matches(preserve, remote.path):
        return keep("preserved")
    forgotten = forget and record is not None and record.state == "forgotten"
    if record is None or not (record.state == "synced" or forgotten):
        return keep("not_synced")
    if record.size != remote.size or not same_second(record.mtime_ns, remote.mtime_ns):
        return keep("changed_on_remote")
    if forgotten:
        if hashes is not None and (
            hashes.remote is None or record.sha256 not in (None, hashes.remote)
        ):
            return keep("changed_on_remote")
        return Decision(remote, PURGE, "")
    if here is None:
        return keep("local_copy_missing")
    if here[0] != record.size:
        return keep("local_copy_differs")
    if hashes is not None:
        expected = record.sha256 or hashes.remote
        if hashes.remote is None or hashes.remote != expected:
            return keep("changed_on_remote")
        if hashes.local != expected:
            return keep("local_copy_differs")
    return Decision(remote, PURGE, "")


def select_purgeable(
    files: Iterable[RemoteFile],
    records: dict[bytes, FileRecord],
    local: dict[bytes, tuple[int, int]],
    wants: FileFilter,
    preserve: tuple[str, ...],
    cutoff_ns: int,
    hashes: dict[bytes, Hashes] | None = None,
    forget: bool = False,
) -> list[Decision]:
    """Decide for every wanted remote file (files we never sync are never touched).

    Given the listing, the manifest rows, local (size, mtime_ns) of existing copies, the
    include/exclude filter, `preserve`, the age cutoff (remote clock, ns) and, under
    `verify: sha256`, the hashes of the files otherwise purgeable, return the decisions.
    """
    return [
        decide(
            remote,
            records.get(remote.path),
            local.get(remote.path),
            preserve,
            cutoff_ns,
            None if hashes is None else hashes.get(remote.path, Hashes(None, None)),
            forget,
        )
        for remote in files
        if wants.wants(remote.path)
    ]


class CleanupRun(ContainerRun):
    """The I/O of one cleanup run of one container."""

    def __init__(self, *args: Any, dry_run: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dry_run = dry_run

    def run(self) -> RunOutcome:
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
        self.progress.begin("cleanup", len(purge), sum(f.size for f in purge))
        try:
            for start in range(0, len(purge), BATCH):
                if self.cancel.is_set():
                    self.outcome.cancelled = True
                    break
                self._purge_batch(purge[start : start + BATCH])
        finally:
            self.progress.end()
        return self.outcome

    def _decide(self) -> list[Decision]:
        _, capabilities = self.session.get()
        listing = list_container(self.session, self.container, cancel=self.cancel)
        self._reconcile(listing.files)
        wants = FileFilter(self.container.sync.include, self.container.sync.exclude)
        records = self.manifest.records(self.container.name)
        local = local_state(self.container_dir, listing.files, wants)
        now_ns = int((time.time() + capabilities.clock_offset_s) * NS)
        cutoff = now_ns - int(self.container.cleanup.older_than_s * NS)
        preserve = self.container.cleanup.preserve
        forget = self.container.sync.on_local_delete == "forget"
        decisions = select_purgeable(
            listing.files, records, local, wants, preserve, cutoff, forget=forget
        )
        if self.container.sync.verify != "sha256":
            return decisions
        candidates = [d.file for d in decisions if d.action == PURGE]
        hashes = self._hashes(candidates)
        return select_purgeable(
            listing.files, records, local, wants, preserve, cutoff, hashes, forget
        )

    def _reconcile(self, files: list[RemoteFile]) -> None:
        """Record the purges a crash left unrecorded: an announced file that is gone from
        the listing was deleted (only that exact file may be), so it is recorded purged with
        its event now. One still listed unchanged keeps its intent (a delete may still be
        finishing on the remote); one listed changed was not ours to delete."""
        intents = self.manifest.purge_intents(self.container.name)
        if not intents:
            return
        listed = {f.path: (f.size, f.mtime_ns // NS) for f in files}
        gone = [path for path in intents if path not in listed]
        changed = [
            path
            for path, (size, mtime_ns) in intents.items()
            if path in listed and listed[path] != (size, mtime_ns // NS)
        ]
        events = [
            records.file_purged(self.container.name, self.run_id, path, intents[path][0])
            for path in gone
        ]
        self.manifest.record_purged(self.container.name, gone, events, settled=changed)
        for path in gone:
            self.outcome.files += 1
            self.outcome.bytes += intents[path][0]
            self.log.info("file_purged", path=display(path), bytes=intents[path][0], recovered=True)

    def _hashes(self, files: list[RemoteFile]) -> dict[bytes, Hashes]:
        connection, capabilities = self.session.get()
        paths = [f.path for f in files]
        if capabilities.remote_hashing:
            remote = remote_sha256(connection, self.container.root, paths)
        else:
            remote = {}
            sftp = connection.open_sftp()
            try:
                for path in paths:
                    try:
                        remote[path] = sftp_sha256(sftp, remote_path(self.container, path))
                    except OSError:
                        continue
            finally:
                sftp.close()
        return {
            path: Hashes(file_sha256(local_path(self.container_dir, path)), remote.get(path))
            for path in paths
        }

    def _purge_batch(self, batch: list[RemoteFile]) -> None:
        """Re-check the local copies, make them durable, delete remotely, record."""
        rows = self.manifest.records(self.container.name)
        ready = []
        for remote in batch:
            row = rows.get(remote.path)
            if row is not None and row.state == "forgotten":
                ready.append(remote)  # deleted from the library on purpose
                continue
            target = local_path(self.container_dir, remote.path)
            here = localfs.local_size(target)
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
        self.manifest.record_purge_intents(
            self.container.name, [(f.path, f.size, f.mtime_ns) for f in ready]
        )
        deleted = self._delete(ready)
        gone = [remote for remote in ready if remote.path in deleted]
        events = [
            records.file_purged(self.container.name, self.run_id, f.path, f.size) for f in gone
        ]
        self.manifest.record_purged(
            self.container.name, [f.path for f in gone], events, settled=[f.path for f in ready]
        )
        for remote in gone:
            self.outcome.files += 1
            self.outcome.bytes += remote.size
            self.progress.file_done()
            self.progress.record_purged(remote.size)
            self.log.info("file_purged", path=display(remote.path), bytes=remote.size)
        for remote in ready:
            if remote.path not in deleted:
                self.log.info("file_kept", path=display(remote.path), reason="changed_on_remote")

    def _delete(self, files: list[RemoteFile]) -> set[bytes]:
        connection, capabilities = self.session.get()
        if capabilities.remote_delete:
            return delete_with_command(connection, self.container.root, files)
        sftp = connection.open_sftp()
        try:
            return delete_with_sftp(sftp, self.container.root, files)
        finally:
            sftp.close()


def cleanup_container(
    container: ContainerConfig,
    media_root: bytes,
    manifest: Manifest,
    session: RemoteSession,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    dry_run: bool | None = None,
) -> RunOutcome:
    """Run one cleanup of `container` and record it; return the outcome (failures are in
    it, logged and classified). `dry_run` overrides the config's `cleanup.dry_run`.

    Nothing is purged while the container's last sync failed (SPEC), as the manifest
    records it, so the rule holds after a restart too: the cleanup is then skipped (a
    failure of kind `sync_failing`, not recorded as a run)."""
    if manifest.last_result(container.name, "sync") == "failure":
        skipped = RunOutcome(error="skipped: the last sync of this container failed")
        skipped.result = "failure"
        skipped.error_kinds.add("sync_failing")
        return skipped

    return run_container_job(
        "cleanup",
        CleanupRun,
        container,
        media_root,
        manifest,
        session,
        progress,
        cancel,
        dry_run=container.cleanup.dry_run if dry_run is None else dry_run,
    )
