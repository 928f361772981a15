"""The drain rule (`drain.judge`): a remote file is safe only when the manifest records it
synced as the container has it now, its library copy has that size, and both sha256 agree;
every other file present is unsafe with its reason. Pure, no I/O."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.cleanup import drain
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import CopyRules, CopyStatus, FoundCopies
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile, Skipped

NS = 10**9
NOW = 2_000_000_000 * NS
SETTLE = 5 * NS
WANTS = Scope(("*.png",), ())


def judge(files, records, sizes, hashes, skipped=()):  # type: ignore[no-untyped-def]
    """drain.judge with the copies given as {path: size or None}."""
    copies = FoundCopies({p: (size, 0) for p, size in sizes.items() if size is not None})
    rules = CopyRules(WANTS, SETTLE, 10_000)
    judged = drain.judge(files, skipped, records, copies, hashes, NOW, rules)
    return judged.verified, judged.unsafe


def synced(remote: RemoteFile, state: str = "synced") -> FileRecord:
    return FileRecord(remote.path, remote.size, remote.mtime_ns, None, state)


OLD = NOW - 3600 * NS


def test_each_reason() -> None:
    """Each way a file present on the container can fail to be safe gets its own reason."""
    good = RemoteFile(b"good.png", 10, OLD)
    rotten = RemoteFile(b"rotten.png", 10, OLD)
    gone_local = RemoteFile(b"gone.png", 10, OLD)
    changed = RemoteFile(b"changed.png", 11, OLD)
    never = RemoteFile(b"never.png", 10, OLD)
    writing = RemoteFile(b"writing.png", 10, NOW - NS)
    huge = RemoteFile(b"huge.png", 20_000, OLD)
    excluded = RemoteFile(b"notes.md", 10, OLD)
    forgotten = RemoteFile(b"forgotten.png", 10, OLD)
    files = [good, rotten, gone_local, changed, never, writing, huge, excluded, forgotten]
    records = {f.path: synced(f) for f in (good, rotten, gone_local)}
    records[changed.path] = FileRecord(changed.path, 10, OLD, None, "synced")
    records[forgotten.path] = synced(forgotten, "forgotten")
    sizes = {f.path: f.size for f in files}
    sizes[gone_local.path] = None
    hashes = {good.path: ("aa", "aa"), rotten.path: ("bb", "cc")}
    verified, unsafe = judge(files, records, sizes, hashes)
    assert verified == [good]
    assert dict(unsafe) == {
        b"rotten.png": CopyStatus.BYTES_DIFFER.value,
        b"gone.png": CopyStatus.COPY_MISSING.value,
        b"changed.png": CopyStatus.CHANGED.value,
        b"never.png": CopyStatus.NOT_SYNCED.value,
        b"writing.png": CopyStatus.WRITING.value,
        b"huge.png": CopyStatus.TOO_LARGE.value,
        b"notes.md": CopyStatus.EXCLUDED.value,
    }  # forgotten.png: released, listed apart (tests/unit/test_safety.py)
    assert [path for path, _ in unsafe] == sorted(path for path, _ in unsafe)


def test_a_file_gone_while_hashed_is_neither_and_symlinks_do_not_count() -> None:
    gone = RemoteFile(b"gone.png", 10, OLD)
    verified, unsafe = judge(
        [gone],
        {gone.path: synced(gone)},
        {gone.path: 10},
        {gone.path: ("aa", None)},
        [
            Skipped(b"link.png", "symlink"),
            Skipped(b"a\nb.png", "control character in name", regular=True),
        ],
    )
    assert verified == []
    assert unsafe == [(b"a\nb.png", "control character in name")]


def test_a_local_copy_that_cannot_be_read_is_missing() -> None:
    one = RemoteFile(b"one.png", 10, OLD)
    _, unsafe = judge([one], {one.path: synced(one)}, {one.path: 10}, {one.path: (None, "aa")})
    assert unsafe == [(b"one.png", CopyStatus.COPY_MISSING.value)]


# Weighted towards the one verified case, so that most examples hold some of each.
LOCAL_HASH = st.sampled_from(["x", "x", "x", "y", None])  # None: the copy cannot be read
REMOTE_HASH = st.sampled_from(
    ["x", "x", "x", "y", None, "absent"]
)  # None: gone; absent: not hashed


@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),  # size on the container
            st.sampled_from(["same", "same", "same", "size", "mtime", "ns"]),  # the record
            st.sampled_from(["synced", "synced", "synced", "forgotten", "purged", None]),
            st.sampled_from([False, False, True]),  # recheck
            st.sampled_from([True, True, False]),  # library copy there with that size
            LOCAL_HASH,
            REMOTE_HASH,
            st.booleans(),  # old (else still being written)
        ),
        max_size=30,
    )
)
@settings(max_examples=300)
def test_property_verified_exactly_when_a_synced_copy_holds_the_same_bytes(rows) -> None:  # type: ignore[no-untyped-def]
    """Whatever the rows (mismatched sizes and mtimes, purged, forgotten and rechecked rows,
    missing or unreadable library copies, hashes that differ, files never hashed or gone
    while hashed): a file is verified if and only if its row (synced, or purged and listed
    again) has the container's size and mtime and no doubt, its library copy has that size
    and both ends hash the same; a file gone while hashed, or released (forgotten,
    unchanged), is in neither list; every other file is unsafe. A rule that
    verified less (or nothing) fails as surely as one that verified more."""
    files, records, sizes, hashes = [], {}, {}, {}
    expected_verified, gone = [], set()
    for index, (size, against, state, recheck, local_ok, here, there, old) in enumerate(rows):
        remote = RemoteFile(b"f%d.png" % index, size, (OLD if old else NOW) + 5)
        files.append(remote)
        if state is not None:
            rsize = size + (against == "size")
            mtime = remote.mtime_ns + {"same": 0, "size": 0, "mtime": NS, "ns": 1}[against]
            records[remote.path] = FileRecord(remote.path, rsize, mtime, None, state, recheck)
        sizes[remote.path] = size if local_ok else None
        if there != "absent":
            hashes[remote.path] = (here, there)
        listed = state is not None and against == "same" and not recheck
        if listed and state == "forgotten":
            gone.add(remote.path)  # released: neither verified nor unsafe
        candidate = listed and state in ("synced", "purged") and local_ok
        if candidate and there is None:
            gone.add(remote.path)
        elif candidate and there != "absent" and here is not None and here == there:
            expected_verified.append(remote)
    verified, unsafe = judge(files, records, sizes, hashes)
    assert verified == expected_verified
    assert {path for path, _ in unsafe} == {f.path for f in files} - gone - {
        f.path for f in verified
    }


def test_a_verified_copy_is_safe_after_max_file_size_was_lowered_or_the_pattern_dropped() -> None:
    """Regression (issue 25, item 5): a file synced while `max_file_size` allowed it (or
    while include took it) was reported `larger than max_file_size: never synced` (or
    `excluded by include/exclude`) after the config changed, although its copy verifies.
    The manifest is asked first: a synced copy whose sha256 agrees is safe; only a file
    that has no copy gets those reasons."""
    big = RemoteFile(b"video.png", 20_000, OLD)  # over the 10_000 limit judge() passes
    dropped = RemoteFile(b"notes.md", 10, OLD)  # *.md no longer included
    never_big = RemoteFile(b"never-big.png", 20_000, OLD)
    never_md = RemoteFile(b"never.md", 10, OLD)
    files = [big, dropped, never_big, never_md]
    records = {f.path: synced(f) for f in (big, dropped)}
    sizes = {f.path: f.size for f in files}
    hashes = {big.path: ("aa", "aa"), dropped.path: ("bb", "bb")}
    verified, unsafe = judge(files, records, sizes, hashes)
    assert verified == [big, dropped]
    assert dict(unsafe) == {
        b"never-big.png": CopyStatus.TOO_LARGE.value,
        b"never.md": CopyStatus.EXCLUDED.value,
    }
