"""When a remembered plan may be reused: a no-change poll skips parsing and planning.

A sync run whose plan had nothing to fetch, adopt, forget or wait for leaves a
`ListingMemo`; the next run whose raw listing has the very same bytes, under the same
config and manifest rows, with no listed file's local copy gone missing since, reuses that
plan. Pure rules; the sync run owns the memo between runs (its runner's `SyncState`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.types import Listing, ListingMethod, RemoteFile, Skipped
from forge_syncd.sync.plan import SkipReason, SyncPlan

MEMO_MAX_MISMATCHES = 64  # past this many missing local copies, plan instead of searching


@dataclass(frozen=True)
class ListingMemo:
    """What a sync run that found nothing to fetch listed."""

    digest: bytes
    container: ContainerConfig
    manifest_version: tuple[int, int]
    remote_files: int
    remote_bytes: int
    skipped: tuple[Skipped, ...]  # what the listing refused, logged on every run
    plan_skipped: tuple[tuple[RemoteFile, SkipReason], ...]  # too large: logged on every run


def listing_digest(output: bytes) -> bytes:
    """Return the digest a memo keys on, of a listing's raw bytes."""
    return hashlib.blake2b(output, digest_size=16).digest()


def memo_holds(
    memo: ListingMemo | None,
    output: bytes,
    digest: bytes,
    container: ContainerConfig,
    manifest_version: tuple[int, int],
    mismatched: Callable[[], set[bytes]],
) -> bool:
    """Given the last run's memo, this listing's raw output and digest, the container's
    config and manifest version, and (called only when the rest agrees) the synced paths
    whose local copy is missing or of another size, return whether the memo's plan holds."""
    if not (
        memo is not None
        and memo.digest == digest
        and memo.container == container
        and memo.manifest_version == manifest_version
    ):
        return False
    missing = mismatched()
    # A listed path appears in find's output as a whole field: NUL, "./", path, NUL.
    return len(missing) <= MEMO_MAX_MISMATCHES and not any(
        b"\0./" + path + b"\0" in output for path in missing
    )


def memo_for(
    listing: Listing,
    plan: SyncPlan,
    digest: bytes,
    container: ContainerConfig,
    manifest_version: tuple[int, int],
) -> ListingMemo | None:
    """Return what the next run may reuse: only a find listing whose plan had nothing to
    fetch, adopt, forget or wait for (a plan that depends on nothing but its inputs)."""
    if (
        listing.method != ListingMethod.FIND
        or not digest
        or plan.fetch
        or plan.adopt
        or plan.forget
    ):
        return None
    if any(reason != SkipReason.TOO_LARGE for _, reason in plan.skipped):
        return None
    return ListingMemo(
        digest,
        container,
        manifest_version,
        len(plan.wanted),
        sum(f.size for f in plan.wanted),
        tuple(listing.skipped),
        tuple(plan.skipped),
    )
