"""The pure cleanup rule: what may be purged, with which bytes, and why everything else is
kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.cleanup import Action, Decision, select_purgeable
from forge_syncd.cleanup.rules import LocalHash, PurgePolicy
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import CopyRules, FoundCopies
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile

NS = 10**9
CUTOFF = 1_000_000 * NS  # files older than this may go
AGE = 3600 * NS  # cleanup.older_than
NOW = CUTOFF + AGE
OLD = CUTOFF - 10 * NS
ALL = Scope(("*",), ())
H = "ab" * 32
OTHER = "cd" * 32


def purgeable(
    files: list[RemoteFile],
    records: dict[bytes, FileRecord],
    local: dict[bytes, tuple[int, int]],
    wants: Scope,
    preserve: tuple[str, ...],
    local_sha: LocalHash,
    check_local: bool = False,
    forget: bool = False,
) -> list[Decision]:
    rules = CopyRules(wants, 0, 1 << 62)
    policy = PurgePolicy(preserve, AGE, check_local, forget)
    return select_purgeable(files, records, FoundCopies(local), NOW, rules, policy, local_sha)


def one(
    remote: RemoteFile,
    record: FileRecord | None,
    local: tuple[int, int] | None,
    preserve: tuple[str, ...] = (),
    local_sha: str | None = H,
    check_local: bool = False,
    forget: bool = False,
) -> tuple[str, str, str | None]:
    decisions = purgeable(
        [remote],
        {remote.path: record} if record else {},
        {remote.path: local} if local else {},
        ALL,
        preserve,
        lambda _path: local_sha,
        check_local,
        forget,
    )
    return decisions[0].action, decisions[0].reason, decisions[0].sha256


T = OLD + 123  # an mtime to the nanosecond, as GNU find lists it
FILE = RemoteFile(b"a/b.png", 100, T)
SYNCED = FileRecord(b"a/b.png", 100, T, H, "synced")
LEGACY = FileRecord(b"a/b.png", 100, T, None, "synced")  # a round-1 row: no sha256


@pytest.mark.parametrize(
    ("remote", "record", "local", "preserve", "local_sha", "check", "expected"),
    [
        (FILE, SYNCED, (100, 0), (), None, False, (Action.PURGE, "", H)),
        (
            RemoteFile(b"a/b.png", 100, CUTOFF + NS),
            SYNCED,
            (100, 0),
            (),
            H,
            False,
            (Action.KEEP, "too_young", None),
        ),
        (FILE, SYNCED, (100, 0), ("*.png",), H, False, (Action.KEEP, "preserved", None)),
        (FILE, SYNCED, (100, 0), ("a/**",), H, False, (Action.KEEP, "preserved", None)),
        (FILE, None, (100, 0), (), H, False, (Action.KEEP, "not_synced", None)),
        (
            RemoteFile(b"a/b.png", 101, OLD),
            SYNCED,
            (100, 0),
            (),
            H,
            False,
            (Action.KEEP, "changed_on_remote", None),
        ),
        (
            RemoteFile(b"a/b.png", 100, OLD - NS),
            SYNCED,
            (100, 0),
            (),
            H,
            False,
            (Action.KEEP, "changed_on_remote", None),
        ),
        # the same second, another nanosecond: a rewrite the listing shows (find: ns)
        (
            RemoteFile(b"a/b.png", 100, OLD + 7),
            SYNCED,
            (100, 0),
            (),
            H,
            False,
            (Action.KEEP, "changed_on_remote", None),
        ),
        # a whole-second listing (SFTP) of a file recorded to the nanosecond: the same second
        (
            RemoteFile(b"a/b.png", 100, OLD),
            FileRecord(b"a/b.png", 100, OLD + 7, H, "synced"),
            (100, 0),
            (),
            H,
            False,
            (Action.PURGE, "", H),
        ),
        (FILE, SYNCED, None, (), H, False, (Action.KEEP, "local_copy_missing", None)),
        (FILE, SYNCED, (99, 0), (), H, False, (Action.KEEP, "local_copy_differs", None)),
        (
            FILE,
            FileRecord(b"a/b.png", 100, OLD, H, "synced", recheck=True),
            (100, 0),
            (),
            H,
            False,
            (Action.KEEP, "bytes_unconfirmed", None),
        ),
        (
            FILE,
            FileRecord(b"a/b.png", 100, OLD, H, "purged"),
            (100, 0),
            (),
            H,
            False,
            (Action.PURGE, "", H),
        ),  # purged, then listed again unchanged, its copy intact: a synced row (issue 26)
        (
            FILE,
            FileRecord(b"a/b.png", 100, T, H, "purged"),
            None,
            (),
            H,
            False,
            (Action.KEEP, "local_copy_missing", None),
        ),
        # verify: sha256 proves the library copy first
        (FILE, SYNCED, (100, 0), (), H, True, (Action.PURGE, "", H)),
        (FILE, SYNCED, (100, 0), (), OTHER, True, (Action.KEEP, "local_copy_differs", None)),
        (FILE, SYNCED, (100, 0), (), None, True, (Action.KEEP, "local_copy_missing", None)),
        # a row without a recorded sha256: the library copy's bytes are what the remote must hold
        (FILE, LEGACY, (100, 0), (), OTHER, False, (Action.PURGE, "", OTHER)),
        (FILE, LEGACY, (100, 0), (), None, False, (Action.KEEP, "local_copy_missing", None)),
    ],
)
def test_each_rule(
    remote: RemoteFile,
    record: FileRecord | None,
    local: tuple[int, int] | None,
    preserve: tuple[str, ...],
    local_sha: str | None,
    check: bool,
    expected: tuple[str, str, str | None],
) -> None:
    """Each SPEC rule keeps the file with its own reason; a purge carries the sha256 the
    remote file must still have when it is deleted (the library copy's)."""
    assert one(remote, record, local, preserve, local_sha, check) == expected


def test_forgotten_files_go_only_against_their_recorded_bytes() -> None:
    """Under `on_local_delete: forget`, a forgotten file (its library copy deleted by the
    user) may go, against the sha256 recorded when it landed; one without a recorded sha256
    is kept (no bytes to compare with), and without `forget` it is never purged."""
    forgotten = FileRecord(b"a/b.png", 100, T, H, "forgotten")
    assert one(FILE, forgotten, None, forget=True) == (Action.PURGE, "", H)
    assert one(FILE, forgotten, None, forget=False) == (Action.KEEP, "released", None)
    legacy = FileRecord(b"a/b.png", 100, T, None, "forgotten")
    assert one(FILE, legacy, None, forget=True) == (Action.KEEP, "no_recorded_hash", None)


def test_files_we_never_sync_are_never_touched() -> None:
    """Non-included and excluded files get no decision at all (not even a keep)."""
    wants = Scope(("*.png",), ("*keep*",))
    files = [RemoteFile(b"x.txt", 1, OLD), RemoteFile(b"keep.png", 1, OLD)]
    assert purgeable(files, {}, {}, wants, (), lambda _p: H) == []


paths = st.sampled_from([b"a.png", b"b/c.png", b"keep/d.png", b"e.jpg", b"f.png", b"g.png"])
# Each file's story relative to its listing, weighted towards the one purgeable case so that
# most examples hold both purges and keeps.
row = st.tuples(
    st.integers(0, 3),  # size on the container
    st.sampled_from([-2, -1, -1, 0, 1]),  # mtime (s) from the cutoff
    st.sampled_from([5, 5, 0]),  # its nanoseconds (0: a whole-second listing, SFTP)
    st.sampled_from(["same", "same", "same", "size", "mtime", "ns", "ns", "none"]),  # the record
    st.sampled_from(["synced", "synced", "synced", "purged", "forgotten"]),
    st.sampled_from([False, False, True]),  # recheck
    st.sampled_from(["h1", "h1", None]),  # sha256 recorded
    st.sampled_from(["same", "same", "other", "none"]),  # library copy's size
    st.sampled_from(["h1", "h1", "h2", None]),  # library copy's sha256 (None: unreadable)
)


@settings(max_examples=400)
@given(
    st.dictionaries(paths, row, max_size=6),
    st.booleans(),
    st.booleans(),
)
def test_property_purges_exactly_the_verified_copies(
    rows: dict[bytes, tuple[int, int, int, str, str, bool, str | None, str, str | None]],
    check_local: bool,
    forget: bool,
) -> None:
    """Whatever the listing, manifest (synced, purged, forgotten rows, rows to recheck, rows
    with and without a sha256, sizes and mtimes that differ by a byte, a second or a
    nanosecond), library copies and their hashes: a file is selected for deletion if and
    only if it is old, wanted, not preserved, recorded with the remote's current (size,
    mtime) and no doubt, and has a library copy of that size whose bytes are known
    (recorded, or hashed; under sha256 hashed and equal to the record) — and the sha256 the
    delete must find is exactly those bytes. A rule that purged less (or never) fails the
    "if" half; one that purged more fails the "only if" half."""
    files, records, local_state, local_hashes = [], {}, {}, {}
    for path, (size, mtime, nanos, against, state, recheck, sha, here, here_sha) in rows.items():
        remote = RemoteFile(path, size, CUTOFF + mtime * NS + nanos)
        files.append(remote)
        if against != "none":
            rsize = size + (against == "size")
            rmtime = remote.mtime_ns + {"same": 0, "size": 0, "mtime": NS, "ns": 1}[against]
            records[path] = FileRecord(path, rsize, rmtime, sha, state, recheck)
        if here != "none":
            local_state[path] = (size + (here == "other"), 0)
        local_hashes[path] = here_sha
    wants = Scope(("*.png",), ())
    decisions = purgeable(
        files,
        records,
        local_state,
        wants,
        ("keep/**",),
        lambda path: local_hashes.get(path),
        check_local,
        forget,
    )
    assert [d.file for d in decisions] == [f for f in files if f.path.endswith(b".png")]
    for decision in decisions:
        expected = _oracle(decision.file, records, local_state, local_hashes, check_local, forget)
        assert (decision.action == Action.PURGE) == (expected is not None), decision
        assert decision.sha256 == expected


def _oracle(
    remote: RemoteFile,
    records: dict[bytes, FileRecord],
    local: dict[bytes, tuple[int, int]],
    local_hashes: dict[bytes, str | None],
    check_local: bool,
    forget: bool,
) -> str | None:
    """The sha256 a purge of `remote` must find, or None when it must be kept: SPEC's
    cleanup semantics, written out independently of the rule."""
    record = records.get(remote.path)
    if remote.mtime_ns > CUTOFF or remote.path.startswith(b"keep/") or record is None:
        return None
    a, b = record.mtime_ns, remote.mtime_ns  # the same at the precision both have:
    same = a == b or ((a % NS == 0 or b % NS == 0) and a // NS == b // NS)
    if record.size != remote.size or not same or record.recheck:
        return None
    if record.state == "forgotten" and forget:
        return record.sha256
    if record.state == "forgotten" or local.get(remote.path, (None,))[0] != remote.size:
        return None
    if record.sha256 is not None and not check_local:
        return record.sha256
    here = local_hashes.get(remote.path)
    if here is None or (record.sha256 is not None and here != record.sha256):
        return None
    return here
