"""What may be purged: the pure rules of SPEC's "Cleanup semantics".

A remote file may go only when it is old enough, matches no `preserve` pattern, and the
library holds a safe copy of it (`safety.py`: the manifest recorded it synced with the
(size, mtime) the remote reports now, no doubt about its bytes, and the local copy exists
with that size). Then the purge is
decided by bytes, not times: the decision carries the sha256 the library copy holds
(recorded when it landed; hashed from the copy for older rows, and always under
`verify: sha256`, where it must equal the record), and the remote file is deleted only if
its own sha256, computed on the container at the moment of the delete, is that one
(`transports/shell/delete.py`). Everything else old enough is kept with its reason. Also here: how
announced purges that a crash left unrecorded are settled, and that nothing is purged while
the container's last sync failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from forge_syncd.control.messages import DecisionRow
from forge_syncd.jobs.kinds import RunResult
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import (
    Copies,
    CopyRules,
    CopyStatus,
    copy_status,
    purge_sha256,
)
from forge_syncd.mtimes import NS, older_than, same_mtime
from forge_syncd.paths import display
from forge_syncd.patterns import any_matches
from forge_syncd.remote.types import RemoteFile

if TYPE_CHECKING:
    from forge_syncd.config.model import ContainerConfig


class Action(StrEnum):
    """What a cleanup does with one remote file."""

    PURGE = "purge"  # delete it: the library holds its bytes
    KEEP = "keep"  # keep it, for the decision's reason


LocalHash = Callable[[bytes], str | None]
# `cleanup.require_mirror`: given a remote file's path and the library copy's sha256,
# whether the mirror holds those bytes (`events/sinks/mirror/holds.py`).
MirrorCheck = Callable[[bytes, str], bool]
# Why a file the library holds safely is kept under `require_mirror`.
NOT_MIRRORED = "not_mirrored"


@dataclass(frozen=True)
class Decision:
    """`sha256`, for a purge: the bytes the remote file must still hold when it is deleted
    (the library copy's)."""

    file: RemoteFile
    action: str  # purge | keep
    reason: str  # "" for purge; else too_young, preserved, or a safety.CopyStatus value
    sha256: str | None = None

    def as_dict(self) -> DecisionRow:
        return {
            "path": display(self.file.path),
            "size": self.file.size,
            "action": self.action,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PurgePolicy:
    """What a container's cleanup asks on top of a safe copy: `preserve`, how old a file
    must be to go (`older_than`), whether the copy's bytes must be proven (`verify:
    sha256`) and whether a file the user deleted from the library may go (`on_local_delete:
    forget`)."""

    preserve: tuple[str, ...]
    older_than_ns: int
    prove: bool = False
    forget: bool = False
    mirrored: MirrorCheck | None = None  # `require_mirror`: purge only what it holds

    @classmethod
    def of(cls, container: ContainerConfig, mirrored: MirrorCheck | None = None) -> PurgePolicy:
        """Given a container's config (and, under `require_mirror`, how to ask the mirror),
        return its policy."""
        return cls(
            container.cleanup.preserve,
            int(container.cleanup.older_than_s * NS),
            container.sync.verify == "sha256",
            container.sync.on_local_delete == "forget",
            mirrored,
        )


def decide(
    remote: RemoteFile,
    record: FileRecord | None,
    copies: Copies,
    now_ns: int,
    rules: CopyRules,
    policy: PurgePolicy,
    local_sha256: LocalHash,
) -> Decision:
    """Given one wanted remote file, its manifest row, the library copies, the container's
    clock, the sync rules and the cleanup policy, return whether it may go, and for a purge
    the sha256 its bytes must have.

    Policy first (`too_young`, `preserved`), then the safe-copy rule (`safety.copy_status`):
    a SAFE file goes; a RELEASED one (synced, then deleted from the library by the user)
    only with `forget`, against the sha256 recorded when it landed. Under `require_mirror`
    (`policy.mirrored`) either goes only once the mirror holds those bytes (`not_mirrored`).
    `local_sha256(path)` hashes the library copy (None: unreadable); it is called only where
    the record holds no sha256 or `policy.prove` asks for the copy to be proven.
    """
    if not older_than(remote.mtime_ns, now_ns, policy.older_than_ns):
        return Decision(remote, Action.KEEP, "too_young")
    if any_matches(policy.preserve, remote.path):
        return Decision(remote, Action.KEEP, "preserved")
    status = copy_status(remote, record, copies, now_ns, rules)
    if record is not None and (
        status is CopyStatus.SAFE or (status is CopyStatus.RELEASED and policy.forget)
    ):
        sha256 = purge_sha256(record, status, lambda: local_sha256(remote.path), policy.prove)
        if isinstance(sha256, CopyStatus):  # a StrEnum: asked first
            status = sha256
        elif policy.mirrored is not None and not policy.mirrored(remote.path, sha256):
            return Decision(remote, Action.KEEP, NOT_MIRRORED)
        else:
            return Decision(remote, Action.PURGE, "", sha256)
    return Decision(remote, Action.KEEP, status.value)


def select_purgeable(
    files: Iterable[RemoteFile],
    records: Mapping[bytes, FileRecord],
    copies: Copies,
    now_ns: int,
    rules: CopyRules,
    policy: PurgePolicy,
    local_sha256: LocalHash,
) -> list[Decision]:
    """Decide for every wanted remote file (files we never sync are never touched).

    Given the listing, the manifest rows, the library copies, the container's clock (ns),
    the sync rules, the cleanup policy and how to hash a library copy, return the
    decisions (`decide`).
    """
    return [
        decide(remote, records.get(remote.path), copies, now_ns, rules, policy, local_sha256)
        for remote in files
        if rules.scope.wants(remote.path)
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
    return last_sync_result == RunResult.FAILURE
