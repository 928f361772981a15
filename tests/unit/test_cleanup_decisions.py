"""The pure cleanup rule: what may be purged, and why everything else is kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.cleanup import KEEP, PURGE, Hashes, select_purgeable
from forge_syncd.manifest import FileRecord
from forge_syncd.patterns import FileFilter
from forge_syncd.remote.listing import RemoteFile

NS = 10**9
CUTOFF = 1_000_000 * NS
OLD = CUTOFF - 10 * NS
ALL = FileFilter(("*",), ())
H = "ab" * 32


def one(
    remote: RemoteFile,
    record: FileRecord | None,
    local: tuple[int, int] | None,
    preserve: tuple[str, ...] = (),
    hashes: Hashes | None = None,
) -> tuple[str, str]:
    decisions = select_purgeable(
        [remote],
        {remote.path: record} if record else {},
        {remote.path: local} if local else {},
        ALL,
        preserve,
        CUTOFF,
        None if hashes is None else {remote.path: hashes},
    )
    return decisions[0].action, decisions[0].reason


FILE = RemoteFile(b"a/b.png", 100, OLD)
SYNCED = FileRecord(b"a/b.png", 100, OLD + 123, H, "synced")


@pytest.mark.parametrize(
    ("remote", "record", "local", "preserve", "hashes", "expected"),
    [
        (FILE, SYNCED, (100, 0), (), None, (PURGE, "")),
        (RemoteFile(b"a/b.png", 100, CUTOFF + NS), SYNCED, (100, 0), (), None, (KEEP, "too_young")),
        (FILE, SYNCED, (100, 0), ("*.png",), None, (KEEP, "preserved")),
        (FILE, SYNCED, (100, 0), ("a/**",), None, (KEEP, "preserved")),
        (FILE, None, (100, 0), (), None, (KEEP, "not_synced")),
        (RemoteFile(b"a/b.png", 101, OLD), SYNCED, (100, 0), (), None, (KEEP, "changed_on_remote")),
        (
            RemoteFile(b"a/b.png", 100, OLD - NS),
            SYNCED,
            (100, 0),
            (),
            None,
            (KEEP, "changed_on_remote"),
        ),
        (FILE, SYNCED, None, (), None, (KEEP, "local_copy_missing")),
        (FILE, SYNCED, (99, 0), (), None, (KEEP, "local_copy_differs")),
        (FILE, SYNCED, (100, 0), (), Hashes(H, H), (PURGE, "")),
        (FILE, SYNCED, (100, 0), (), Hashes("cd" * 32, H), (KEEP, "local_copy_differs")),
        (FILE, SYNCED, (100, 0), (), Hashes(H, "cd" * 32), (KEEP, "changed_on_remote")),
        (FILE, SYNCED, (100, 0), (), Hashes(H, None), (KEEP, "changed_on_remote")),
    ],
)
def test_each_rule(
    remote: RemoteFile,
    record: FileRecord | None,
    local: tuple[int, int] | None,
    preserve: tuple[str, ...],
    hashes: Hashes | None,
    expected: tuple[str, str],
) -> None:
    """Each SPEC rule keeps the file with its own reason; only a verified copy allows a purge."""
    assert one(remote, record, local, preserve, hashes) == expected


def test_files_we_never_sync_are_never_touched() -> None:
    """Non-included and excluded files get no decision at all (not even a keep)."""
    wants = FileFilter(("*.png",), ("*keep*",))
    files = [RemoteFile(b"x.txt", 1, OLD), RemoteFile(b"keep.png", 1, OLD)]
    assert select_purgeable(files, {}, {}, wants, (), CUTOFF) == []


paths = st.sampled_from([b"a.png", b"b/c.png", b"keep/d.png", b"e.jpg", b"f.png"])


@given(
    st.lists(st.tuples(paths, st.integers(0, 5), st.integers(-3, 3)), unique_by=lambda t: t[0]),
    st.dictionaries(
        paths, st.tuples(st.integers(0, 5), st.integers(-3, 3), st.sampled_from([None, "h1", "h2"]))
    ),
    st.dictionaries(paths, st.integers(0, 5)),
    st.booleans(),
    st.dictionaries(
        paths, st.tuples(st.sampled_from([None, "h1", "h2"]), st.sampled_from([None, "h1", "h2"]))
    ),
)
def test_property_nothing_unsafe_is_ever_selected(
    listing: list[tuple[bytes, int, int]],
    manifest: dict[bytes, tuple[int, int, str | None]],
    local: dict[bytes, int],
    sha256: bool,
    hashes: dict[bytes, tuple[str | None, str | None]],
) -> None:
    """Whatever the listing, manifest and local state: a file selected for deletion is old,
    wanted, not preserved, recorded with the remote's current (size, mtime), has a local
    copy of that size, and under sha256 all hashes agree."""
    files = [RemoteFile(p, s, CUTOFF + m * NS) for p, s, m in listing]
    records = {
        p: FileRecord(p, s, CUTOFF + m * NS, h, "synced") for p, (s, m, h) in manifest.items()
    }
    local_state = {p: (s, 0) for p, s in local.items()}
    hash_map = {p: Hashes(*h) for p, h in hashes.items()} if sha256 else None
    wants = FileFilter(("*.png",), ())
    decisions = select_purgeable(files, records, local_state, wants, ("keep/**",), CUTOFF, hash_map)
    for decision in decisions:
        if decision.action != PURGE:
            continue
        remote = decision.file
        record = records[remote.path]
        assert remote.path.endswith(b".png") and not remote.path.startswith(b"keep/")
        assert remote.mtime_ns <= CUTOFF
        assert (record.size, record.mtime_ns // NS) == (remote.size, remote.mtime_ns // NS)
        assert local_state[remote.path][0] == remote.size
        if hash_map is not None:
            got = hash_map[remote.path]
            assert got.local is not None and got.local == got.remote
            assert record.sha256 in (None, got.local)
