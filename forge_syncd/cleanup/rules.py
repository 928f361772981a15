"""What may be purged: the pure rules of SPEC's "Cleanup semantics".

A remote file may go only when it is old enough, matches no `preserve` pattern, the
manifest recorded it synced with the (size, mtime) the remote reports now, and the local
copy exists with that size (and, under `verify: sha256`, local, remote and recorded hashes
agree). Everything else old enough is kept with its reason. Also here: how announced purges
that a crash left unrecorded are settled, and that nothing is purged while the container's
last sync failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from forge_syncd.manifest import FileRecord
from forge_syncd.paths import display
from forge_syncd.patterns import FileFilter, any_matches
from forge_syncd.remote.listing import RemoteFile
from forge_syncd.sync.plan import NS, same_second

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


def settle_intents(
    intents: Mapping[bytes, tuple[int, int]], listed: Mapping[bytes, tuple[int, int]]
) -> tuple[list[bytes], list[bytes]]:
    """Given the purges announced and never recorded ({path: (size, mtime_ns)}) and what
    the remote lists now ({path: (size, mtime_ns)}), return (gone, changed): an announced
    file gone from the listing was deleted (only that exact file may be: record it purged);
    one listed with another size or mtime was not ours to delete (drop its intent). One still
    listed unchanged keeps its intent (a delete may still be finishing on the remote)."""
    gone = [path for path in intents if path not in listed]
    changed = [
        path
        for path, (size, mtime_ns) in intents.items()
        if path in listed and (listed[path][0], listed[path][1] // NS) != (size, mtime_ns // NS)
    ]
    return gone, changed


def held_back(last_sync_result: str | None) -> bool:
    """Return whether a cleanup must not run: the container's last sync failed (SPEC:
    nothing is purged while its sync is failing)."""
    return last_sync_result == "failure"
