"""What to fetch: the pure decision of a sync, given a listing, the manifest rows and the
local copies (no I/O). `plan_sync` is property-tested in tests/unit/."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from forge_syncd.library.manifest import FileRecord, FileState
from forge_syncd.library.safety import Copies, CopyRules, CopyStatus, copy_status
from forge_syncd.mtimes import FUTURE_SLACK_NS, older_than, same_mtime
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile


class SkipReason(StrEnum):
    """Why the plan leaves a wanted file on the container for now."""

    TOO_LARGE = "too_large"  # over `max_file_size`
    SETTLING = "settling"  # written within `settle`: maybe still being written
    MTIME_IN_FUTURE = "mtime_in_future"  # ahead of the container's clock: two looks first


@dataclass
class SyncPlan:
    fetch: list[RemoteFile] = field(default_factory=list)
    adopt: list[RemoteFile] = field(default_factory=list)
    skipped: list[tuple[RemoteFile, SkipReason]] = field(default_factory=list)
    forget: list[RemoteFile] = field(default_factory=list)
    future: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # (size, mtime_ns)
    unchanged: int = 0
    wanted: list[RemoteFile] = field(default_factory=list)
    forget_suspended: int = 0  # missing copies refetched: too many gone at once to forget


# `on_local_delete: forget` is suspended for a run in which more than this share of a
# container's synced files (and more than FORGET_GUARD_MIN) are missing at once: that is an
# unmounted or wiped library, not a user culling images, and forgetting would let cleanup
# purge the only copies.
FORGET_GUARD_SHARE = 0.5
EVERYTHING = Scope(("*",), ())  # a listing filtered already: every file is wanted
FORGET_GUARD_MIN = 20
# A file from the future (`mtimes.FUTURE_SLACK_NS` ahead of the container's clock): waiting
# for `settle` would wait until the clock catches up (for ever, in the year 2286), so it is
# ready once two looks in a row saw the same size and mtime. Closer is noise: it settles.


def plan_sync(
    files: Iterable[RemoteFile],
    records: dict[bytes, FileRecord],
    local: Copies,
    wants: Scope | None,
    now_ns: int,
    settle_ns: int,
    max_size: int,
    forget: bool = False,
    seen_future: Mapping[bytes, tuple[int, int]] | None = None,
) -> SyncPlan:
    """Decide, for each remote file, whether to fetch it, adopt the local copy, forget it
    or skip it.

    Given the listing, the manifest rows, the local (size, mtime_ns) of wanted paths that
    exist locally, the include/exclude filter (None: the listing is already filtered), the
    remote "now" and whether `on_local_delete` is `forget`, return a SyncPlan:
    - unchanged: the library holds it durably (`safety.copy_status`): the manifest has the
      same (size, mtime) and the local copy has that size, or the file was forgotten
      (deleted from the library by the user) and is unchanged; mtimes compare at the
      precision the listing has (`mtimes.same_mtime`);
    - fetch: new or changed on the remote, or its local copy is missing or of another size,
      or its row is marked `recheck` (read too soon after it was written, or its bytes
      found different at a purge): the same size and mtime do not prove the same bytes;
    - forget (with `forget`): synced and unchanged, but its local copy is gone: the user
      deleted it, so it is not fetched again (unless too many are gone at once, see
      FORGET_GUARD_SHARE: then they are fetched and counted in `forget_suspended`);
    - adopt: new to the manifest, but a local copy of the same size and mtime is already
      there (a previous crash after rename, or a library first filled by rsync);
    - skipped: larger than `max_size`, or modified within `settle` (still being written),
      or with an mtime ahead of the remote "now" (`mtime_in_future`) and not seen with the
      same size and mtime by the last look (`seen_future`, that look's `plan.future`).
    A path whose local copy holds other bytes is fetched: the sync moves that copy into
    `.versions/` before the new file takes its place (versions.py).
    """
    plan = SyncPlan()
    synced = 0
    rules = CopyRules(wants or EVERYTHING, settle_ns, max_size)
    for remote in files:
        if wants is not None and not wants.wants(remote.path):
            continue
        plan.wanted.append(remote)
        record = records.get(remote.path)
        synced += _classify(remote, record, local, now_ns, rules, forget, seen_future, plan)
    missing = len(plan.forget)
    if missing > FORGET_GUARD_MIN and missing > FORGET_GUARD_SHARE * (synced + missing):
        plan.fetch += plan.forget
        plan.forget, plan.forget_suspended = [], missing
    return plan


def _classify(
    remote: RemoteFile,
    record: FileRecord | None,
    local: Copies,
    now_ns: int,
    rules: CopyRules,
    forget: bool,
    seen_future: Mapping[bytes, tuple[int, int]] | None,
    plan: SyncPlan,
) -> bool:
    """Put one wanted file where `plan_sync` says it goes; return whether the library
    holds it durably (synced: it counts for FORGET_GUARD_SHARE)."""
    status = copy_status(remote, record, local, now_ns, rules)
    if status is CopyStatus.SAFE or status is CopyStatus.RELEASED:
        plan.unchanged += 1
        return status is CopyStatus.SAFE
    # The row has the listed size and mtime, its bytes proven (`known`) or not.
    known = status is CopyStatus.COPY_MISSING or status is CopyStatus.COPY_DIFFERS
    matches = known or status is CopyStatus.UNCONFIRMED
    if remote.size > rules.max_size:
        plan.skipped.append((remote, SkipReason.TOO_LARGE))
    elif not known and (wait := _waiting(remote, now_ns, rules.settle_ns, seen_future, plan)):
        plan.skipped.append((remote, wait))
    elif (
        not matches
        and (here := local.get(remote.path)) is not None
        and here[0] == remote.size
        and same_mtime(here[1], remote.mtime_ns)
    ):
        plan.adopt.append(remote)
    elif (
        forget
        and status is CopyStatus.COPY_MISSING
        and record is not None
        and record.state == FileState.SYNCED
    ):
        plan.forget.append(remote)
    else:
        plan.fetch.append(remote)
    return False


def _waiting(
    remote: RemoteFile,
    now_ns: int,
    settle_ns: int,
    seen_future: Mapping[bytes, tuple[int, int]] | None,
    plan: SyncPlan,
) -> SkipReason | None:
    """Return why a new or changed file is not ready yet (None: it is ready); remember a
    file from the future in `plan.future` for the next look."""
    if older_than(remote.mtime_ns, now_ns, settle_ns):
        return None
    if remote.mtime_ns <= now_ns + FUTURE_SLACK_NS:
        return SkipReason.SETTLING
    seen = (remote.size, remote.mtime_ns)
    plan.future[remote.path] = seen
    if seen_future and seen_future.get(remote.path) == seen:
        return None
    return SkipReason.MTIME_IN_FUTURE
