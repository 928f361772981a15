"""The remote-hash shortcut (`sync.dedupe_min_size`): a large file whose bytes the library
holds is made from the library copy instead of transferred, and only when the container
hashes in place and the file did not change while hashed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from threading import Event

import structlog

from tests.dedupe.conftest import OLD, Library
from tests.support import reflink
from tests.support.fake_remote import FakeRemote

MIB = 1024 * 1024
HASHING = frozenset({"hash"})


def library_with(lib: Library, data: bytes) -> None:
    """Container `a` synced `data` as a/one.bin (transferred: nothing to copy from)."""
    lib.remote("a").write(b"one.bin", data, OLD)
    lib.sync("a", dedupe_min_size=MIB)


def test_a_large_duplicate_is_made_from_the_library_not_transferred(
    xfs_library: Library,
) -> None:
    """Container `b` lists a large file with bytes the library holds and a new one: the
    duplicate is not fetched (a reflink of the library copy lands, recorded with its
    sha256, mtime and events like any file); the new one is; a small duplicate (under
    dedupe_min_size) is transferred and shares blocks at landing."""
    lib = xfs_library
    data, new = os.urandom(2 * MIB), os.urandom(2 * MIB)
    library_with(lib, data)
    remote = lib.remote("b")
    remote.fast_paths = HASHING
    remote.write(b"dup.bin", data, OLD + 1)
    remote.write(b"new.bin", new, OLD)
    with structlog.testing.capture_logs() as logs:
        outcome = lib.sync("b", dedupe_min_size=MIB)
    assert outcome.files == 2
    assert remote.fetched == [b"new.bin"]
    dup = lib.media / "b" / "dup.bin"
    assert dup.read_bytes() == data and os.stat(dup).st_mtime_ns == (OLD + 1) * 10**9
    assert reflink.share_extents(lib.media / "a" / "one.bin", dup)
    made = [e for e in logs if e["event"] == "file_made_locally"]
    assert [(e["path"], e["how"]) for e in made] == [("dup.bin", "reflink")]
    record = lib.manifest.files.records("b")[b"dup.bin"]
    assert (record.size, record.mtime_ns) == (len(data), (OLD + 1) * 10**9)
    assert lib.manifest.shared.saved_bytes() == len(data)
    small = lib.remote("c")
    small.fast_paths = HASHING
    small.write(b"dup.bin", data, OLD)
    lib.sync("c", dedupe_min_size=4 * MIB)
    assert small.fetched == [b"dup.bin"]


def test_no_shortcut_without_hashing_in_place(xfs_library: Library) -> None:
    """A container that would hash over the link (no "hash" fast path) is never asked:
    the file is transferred (and shares blocks when it lands)."""
    lib = xfs_library
    data = os.urandom(2 * MIB)
    library_with(lib, data)
    remote = lib.remote("b")
    remote.write(b"dup.bin", data, OLD)
    lib.sync("b", dedupe_min_size=MIB)
    assert remote.fetched == [b"dup.bin"] and "hashes" not in remote.calls
    assert reflink.share_extents(lib.media / "a" / "one.bin", lib.media / "b" / "dup.bin")


class ChangesWhileHashed(FakeRemote):
    """A container whose file gets new bytes (and mtime) right after it is hashed."""

    def hashes(self, paths: Sequence[bytes], cancel: Event | None = None) -> dict[bytes, str]:
        found = super().hashes(paths, cancel)
        for path in paths:
            data, mtime = self.files[path]
            self.files[path] = (b"new" + data[3:], mtime + 10**9)
        return found


def test_a_file_changed_while_hashed_is_transferred(xfs_library: Library) -> None:
    """The post-check: a file listed again with another mtime after its hashing is not
    made from the library (those bytes may be gone): it is left to the transfer."""
    lib = xfs_library
    data = os.urandom(2 * MIB)
    library_with(lib, data)
    remote = lib.remotes["b"] = ChangesWhileHashed(fast_paths=HASHING)
    remote.write(b"dup.bin", data, OLD)
    with structlog.testing.capture_logs() as logs:
        lib.sync("b", dedupe_min_size=MIB)
    assert remote.fetched == [b"dup.bin"]
    assert any(e.get("reason") == "changed while hashed" for e in logs)
    assert not any(e["event"] == "file_made_locally" for e in logs)


def test_without_reflinks_the_shortcut_copies_locally(plain_library: Library) -> None:
    """On a filesystem without reflinks the duplicate is still not transferred: it is
    copied from the library copy (its hash checked), and lands with its bytes."""
    lib = plain_library
    data = os.urandom(2 * MIB)
    library_with(lib, data)
    remote = lib.remote("b")
    remote.fast_paths = HASHING
    remote.write(b"dup.bin", data, OLD)
    with structlog.testing.capture_logs() as logs:
        lib.sync("b", dedupe_min_size=MIB)
    assert remote.fetched == []
    assert [e["how"] for e in logs if e["event"] == "file_made_locally"] == ["copy"]
    assert (lib.media / "b" / "dup.bin").read_bytes() == data
