"""What may be purged: the pure rules of SPEC's "Cleanup semantics".

A remote file may go only when it is old enough, matches no `preserve` pattern, the
manifest recorded it synced with the (size, mtime) the remote reports now (and no doubt
about its bytes: `recheck`), and the local copy exists with that size. Then the purge is
decided by bytes, not times: the decision carries the sha256 the library copy holds
(recorded when it landed; hashed from the copy for older rows, and always under
`verify: sha256`, where it must equal the record), and the remote file is deleted only if
its own sha256, computed on the container at the moment of the delete, is that one
(`remote/delete.py`). Everything else old enough is kept with its reason. Also here: how
announced purges that a crash left unrecorded are settled, and that nothing is purged while
the container's last sync failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from forge_syncd.library.manifest import FileRecord
from forge_syncd.mtimes import same_mtime
from forge_syncd.paths import display
from forge_syncd.patterns import FileFilter, any_matches
from forge_syncd.remote.types import RemoteFile

PURGE = "purge"
KEEP = "keep"
LocalHash = Callable[[bytes], str | None]


@dataclass(frozen=True)
class Decision:
    """`sha256`, for a purge: the bytes the remote file must still hold when it is deleted
    (the library copy's)."""

    file: RemoteFile
    action: str  # purge | keep
    reason: str  # "" for purge; else preserved, not_synced, changed_on_remote, ...
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": display(self.file.path),
            "size": self.file.size,
            "action": self.action,
            "reason": self.reason,
        }


def decide(
    remote: RemoteFile,
    record: FileRecord | None,
    here: tuple[int, int] | None,
    preserve: tuple[str, ...],
    cutoff_ns: int,
    local_sha256: LocalHash,
    check_local: bool = False,
    forget: bool = False,
) -> Decision:
    """Given one wanted remote file and what we know of it, return whether it may go, and
    for a purge the sha256 its bytes must have.

    Only a current, verified row (`synced`) counts as a copy; with `forget`
    (`on_local_delete: forget`) a `forgotten` row — synced, then deleted from the library
    by the user — lets the unchanged remote file go too, against the sha256 recorded when it
    landed. Purged rows and versions never count. `local_sha256(path)` hashes the library
    copy (None: unreadable); it is called only where the record holds no sha256 or
    `check_local` (`verify: sha256`) asks for the copy to be proven.
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
    if record.size != remote.size or not same_mtime(record.mtime_ns, remote.mtime_ns):
        return keep("changed_on_remote")
    if record.recheck:
        return keep("bytes_unconfirmed")
    if forgotten:
        if record.sha256 is None:
            return keep("no_recorded_hash")
        return Decision(remote, PURGE, "", record.sha256)
    if here is None:
        return keep("local_copy_missing")
    if here[0] != record.size:
        return keep("local_copy_differs")
    expected = record.sha256
    if check_local or expected is None:
        local = local_sha256(remote.path)
        if local is None:
            return keep("local_copy_missing")
        if expected is not None and local != expected:
            return keep("local_copy_differs")
        expected = local
    return Decision(remote, PURGE, "", expected)


def select_purgeable(
    files: Iterable[RemoteFile],
    records: dict[bytes, FileRecord],
    local: Mapping[bytes, tuple[int, int]],
    wants: FileFilter,
    preserve: tuple[str, ...],
    cutoff_ns: int,
    local_sha256: LocalHash,
    check_local: bool = False,
    forget: bool = False,
) -> list[Decision]:
    """Decide for every wanted remote file (files we never sync are never touched).

    Given the listing, the manifest rows, local (size, mtime_ns) of existing copies, the
    include/exclude filter, `preserve`, the age cutoff (remote clock, ns), how to hash a
    library copy and whether `verify: sha256` asks for it, return the decisions.
    """
    return [
        decide(
            remote,
            records.get(remote.path),
            local.get(remote.path),
            preserve,
            cutoff_ns,
            local_sha256,
            check_local,
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
        if path in listed and (listed[path][0] != size or not same_mtime(listed[path][1], mtime_ns))
    ]
    return gone, changed


def held_back(last_sync_result: str | None) -> bool:
    """Return whether a cleanup must not run: the container's last sync failed (SPEC:
    nothing is purged while its sync is failing)."""
    return last_sync_result == "failure"
