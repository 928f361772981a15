"""The pure rules named for what they decide, each without SSH or disk: when a fetched
file counts as verified, when a remembered plan may be reused, how announced purges are
settled, and when cleanup is held back."""

from __future__ import annotations

from forge_syncd.cleanup.rules import held_back, settle_intents
from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.remote.types import Fetched, FetchItem, Listing, RemoteFile
from forge_syncd.sync.memo import listing_digest, memo_for, memo_holds
from forge_syncd.sync.plan import SyncPlan
from forge_syncd.sync.verify import fetched_problem
from forge_syncd.transports.shell.listing import parse_find_output

NS = 1_000_000_000
FILE = RemoteFile(b"a.png", 5, 1_700_000_000 * NS)
BOX = ContainerConfig(name="box", kind="generic", host="h", root="/r", folders=())


def fetched(nbytes: int = 5, sha: str | None = "s", changed: bool = False) -> Fetched:
    return Fetched(FetchItem(FILE, b"/lib/a.png"), b"/lib/.fs-x.part", nbytes, sha, changed)


def test_a_fetched_file_counts_as_verified_only_whole_and_unchanged() -> None:
    """Verified: the listed byte count, not changed while read, and under sha256 the
    remote's digest. A change defers (not a failure); a wrong size or digest fails."""
    assert fetched_problem(fetched(), False, None) is None
    assert fetched_problem(fetched(), True, "s") is None
    assert fetched_problem(fetched(changed=True), False, None) == (
        "changed on the remote during transfer",
        FileKind.CHANGED,
    )
    assert fetched_problem(fetched(nbytes=4), False, None) == (
        "got 4 bytes, expected 5",
        FileKind.VERIFY,
    )
    problem = fetched_problem(fetched(sha="other"), True, "s")
    assert problem is not None and problem[1] == FileKind.VERIFY
    assert fetched_problem(fetched(sha="other"), False, "s") is None  # size-only verify


def test_a_remembered_plan_is_reused_only_for_the_same_bytes_config_and_rows() -> None:
    """A memo is made only from a find listing whose plan did nothing; it holds for the
    same bytes, config and manifest version, unless a listed file's copy went missing."""
    output = b"f\x005\x001700000000.0\x00./a.png\x00"
    listing = parse_find_output(output)
    digest = listing_digest(output)
    idle = SyncPlan(wanted=[FILE], unchanged=1)
    memo = memo_for(listing, idle, digest, BOX, (1, 2))
    assert memo is not None
    assert memo_for(listing, SyncPlan(fetch=[FILE]), digest, BOX, (1, 2)) is None
    assert memo_for(Listing(method="sftp"), idle, digest, BOX, (1, 2)) is None

    def none() -> set[bytes]:
        return set()

    assert memo_holds(memo, output, digest, BOX, (1, 2), none)
    assert not memo_holds(memo, output, listing_digest(output + b"x"), BOX, (1, 2), none)
    assert not memo_holds(memo, output, digest, BOX, (1, 3), none)
    other = ContainerConfig(name="box", kind="generic", host="h2", root="/r", folders=())
    assert not memo_holds(memo, output, digest, other, (1, 2), none)
    assert not memo_holds(memo, output, digest, BOX, (1, 2), lambda: {b"a.png"})
    assert memo_holds(memo, output, digest, BOX, (1, 2), lambda: {b"not-listed.png"})
    assert not memo_holds(None, output, digest, BOX, (1, 2), none)


def test_announced_purges_are_settled_by_what_the_remote_lists() -> None:
    """Gone from the listing: deleted (record it). Listed with another size or mtime: not
    ours (drop the intent). Listed unchanged: still pending (keep the intent)."""
    intents = {
        b"gone": (5, 10 * NS),
        b"changed": (5, 10 * NS),
        b"same": (5, 10 * NS + 7),  # same whole second
    }
    listed = {b"changed": (6, 10 * NS), b"same": (5, 10 * NS)}
    assert settle_intents(intents, listed) == ([b"gone"], [b"changed"])


def test_cleanup_is_held_back_only_after_a_failed_sync() -> None:
    """Nothing is purged while the last sync failed; no sync yet, or a success or a
    cancelled one, does not hold cleanup back."""
    assert held_back("failure")
    assert not held_back(None) and not held_back("success") and not held_back("cancelled")
