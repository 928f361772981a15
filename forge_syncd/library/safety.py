"""Is there a safe library copy of this remote file? The one rule, and its one set of
reasons, that purge (`cleanup/rules.py`), the purge's re-check (`cleanup/run.py`), drain
(`drain.py`), what a sync fetches (`sync/plan.py`) and so `remote_only` and its gauges all
apply. Pure: the caller brings the listing, the manifest row, the library copies and the
container's clock.

A listed file is durable in the library when its manifest row has the size and mtime the
container lists now (at the listing's precision, `mtimes.same_mtime`), without a doubt about
its bytes (`recheck`), and either its library copy is there with that size (SAFE) or the
user deleted that copy on purpose (`forgotten`: RELEASED). The row decides before
include/exclude and max_file_size: a file copied before they changed is as safe as any.
Everything else is not durable, with why. `CopyStatus` values are the words every
caller says (cleanup's `reason`, drain's JSON `reason`, the logs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from forge_syncd.library.manifest import FileRecord, FileState
from forge_syncd.mtimes import NS, older_than, same_mtime
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile

if TYPE_CHECKING:
    from forge_syncd.config.model import ContainerConfig


class CopyStatus(StrEnum):
    """Whether the library holds a listed file durably, and else why not."""

    SAFE = "safe"  # row synced, same size+mtime as listed, no recheck, copy intact
    RELEASED = "released"  # row forgotten (deleted from the library on purpose), unchanged
    EXCLUDED = "excluded"  # present, but include/exclude never syncs it
    TOO_LARGE = "too_large"  # never synced: over max_file_size
    WRITING = "writing"  # new or changed, modified within settle
    NOT_SYNCED = "not_synced"
    CHANGED = "changed_on_remote"
    UNCONFIRMED = "bytes_unconfirmed"  # row marked recheck: the copy may hold older bytes
    COPY_MISSING = "local_copy_missing"
    COPY_DIFFERS = "local_copy_differs"  # copy of another size, or (proved) other bytes
    NO_RECORDED_HASH = "no_recorded_hash"  # a released file without a recorded sha256
    UNHASHED = "unhashed"  # hash stage: the container could not hash it
    BYTES_DIFFER = "bytes_differ"  # hash stage: container bytes differ from the library copy's


DURABLE: Final = frozenset({CopyStatus.SAFE, CopyStatus.RELEASED})


class Copies(Protocol):
    """The library copies of a container's files, as a rule sees them."""

    def get(self, path: bytes, /) -> tuple[int, int] | None:
        """Return the local copy's (size, mtime_ns), or None if there is none."""

    def has_size(self, path: bytes, size: int, /) -> bool:
        """Return whether a local copy of `size` bytes is there."""


class FoundCopies:
    """Copies looked up beforehand, given as {path: (size, mtime_ns)} of those that exist."""

    def __init__(self, found: Mapping[bytes, tuple[int, int]]) -> None:
        self.found = found

    def get(self, path: bytes, /) -> tuple[int, int] | None:
        return self.found.get(path)

    def has_size(self, path: bytes, size: int, /) -> bool:
        here = self.found.get(path)
        return here is not None and here[0] == size


@dataclass(frozen=True)
class CopyRules:
    """The sync rules a status depends on: what the container syncs, how long a file must
    be left alone to count as written, and the largest file synced."""

    scope: Scope
    settle_ns: int
    max_size: int

    @classmethod
    def of(cls, container: ContainerConfig) -> CopyRules:
        """Given a container's config, return its rules."""
        sync = container.sync
        return cls(Scope.of(container), int(sync.settle_s * NS), sync.max_file_size)


def copy_intact(recorded_size: int, here: tuple[int, int] | None) -> bool:
    """Given a row's recorded size and its library copy's (size, mtime_ns) (None: no
    copy), return whether the copy is there with the recorded size."""
    return here is not None and here[0] == recorded_size


def copy_status(
    remote: RemoteFile,
    record: FileRecord | None,
    copies: Copies,
    now_ns: int,
    rules: CopyRules,
) -> CopyStatus:
    """Given a listed file, its manifest row, the library copies, the container's clock and
    the sync rules, return whether the library holds it durably (SAFE, RELEASED) and else
    why not.

    A row with the listed size and mtime decides first, before include/exclude and
    max_file_size: UNCONFIRMED (marked recheck), RELEASED (forgotten), else SAFE when the
    copy is intact, COPY_MISSING or COPY_DIFFERS. A file new or changed since its row is
    EXCLUDED, TOO_LARGE, WRITING (modified within settle), CHANGED (a row existed) or
    NOT_SYNCED, in that order."""
    if (
        record is not None
        and record.size == remote.size
        and same_mtime(record.mtime_ns, remote.mtime_ns)
    ):
        if record.recheck:
            return CopyStatus.UNCONFIRMED
        if record.state == FileState.FORGOTTEN:
            return CopyStatus.RELEASED
        # Synced, or purged and listed again unchanged (a restored file, a purge that
        # did not happen): the copy decides.
        if copies.has_size(remote.path, record.size):
            return CopyStatus.SAFE
        if copies.get(remote.path) is None:
            return CopyStatus.COPY_MISSING
        return CopyStatus.COPY_DIFFERS
    if not rules.scope.wants(remote.path):
        return CopyStatus.EXCLUDED
    if remote.size > rules.max_size:
        return CopyStatus.TOO_LARGE
    if not older_than(remote.mtime_ns, now_ns, rules.settle_ns):
        return CopyStatus.WRITING
    return CopyStatus.NOT_SYNCED if record is None else CopyStatus.CHANGED


def purge_sha256(
    record: FileRecord, status: CopyStatus, hash_copy: Callable[[], str | None], prove: bool
) -> str | CopyStatus:
    """Given a DURABLE file's row and status, how to hash its library copy (None:
    unreadable) and whether `verify: sha256` asks for the copy to be proven, return the
    sha256 its container bytes must have to be deleted — the row's, or the copy's hashed
    when the row has none or `prove` — else why not (NO_RECORDED_HASH, COPY_MISSING,
    COPY_DIFFERS). A released file has no copy: only its recorded sha256 can do."""
    expected = record.sha256
    if status is CopyStatus.RELEASED:
        return CopyStatus.NO_RECORDED_HASH if expected is None else expected
    if prove or expected is None:
        local = hash_copy()
        if local is None:
            return CopyStatus.COPY_MISSING
        if expected is not None and local != expected:
            return CopyStatus.COPY_DIFFERS
        return local
    return expected


def bytes_status(local_sha256: str | None, remote_sha256: str) -> CopyStatus:
    """Drain's hash stage for a SAFE file, given both sha256 (local None: the copy is
    unreadable): SAFE, COPY_MISSING or BYTES_DIFFER. (The caller skips a file the container
    no longer held by then, and calls one it could not hash UNHASHED.)"""
    if local_sha256 is None:
        return CopyStatus.COPY_MISSING
    return CopyStatus.SAFE if local_sha256 == remote_sha256 else CopyStatus.BYTES_DIFFER


def at_risk(status: CopyStatus) -> bool:
    """Return whether a wanted file with this status counts in `remote_only` (listed, not
    yet durable in the library): what a sync's plan leaves at risk is exactly these."""
    return status not in DURABLE and status is not CopyStatus.EXCLUDED
