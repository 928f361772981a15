"""Files that land with bytes the library already holds share its blocks (`library.dedupe`),
on a real XFS (reflinks), in hardlink mode, and on a filesystem without reflinks."""

from __future__ import annotations

import hashlib
import os
import stat

import structlog

from tests.dedupe.conftest import OLD, Library
from tests.support import reflink

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_duplicate_landing_on_xfs_shares_the_library_copys_blocks(
    xfs_library: Library,
) -> None:
    """A file whose bytes another container's file already holds lands as a reflink of it
    (FIEMAP: shared extents), with its own mtime, the same bytes, and the manifest's
    saved-bytes count; a file with new bytes shares nothing."""
    lib = xfs_library
    data = os.urandom(2 * MIB)
    lib.remote("a").write(b"one.png", data, OLD)
    lib.sync("a")
    lib.remote("b").write(b"sub/two.png", data, OLD + 5)
    lib.remote("b").write(b"new.png", os.urandom(MIB), OLD)
    lib.sync("b")
    first, second = lib.media / "a" / "one.png", lib.media / "b" / "sub" / "two.png"
    assert second.read_bytes() == data and first.read_bytes() == data
    assert reflink.share_extents(first, second)
    assert not reflink.share_extents(first, lib.media / "b" / "new.png")
    assert os.stat(second).st_mtime_ns == (OLD + 5) * 10**9
    assert os.stat(first).st_ino != os.stat(second).st_ino
    assert lib.manifest.shared.saved_bytes() == len(data)
    assert lib.manifest.files.records("b")[b"sub/two.png"].sha256 == sha(data)


def test_a_changed_library_copy_is_never_shared(xfs_library: Library) -> None:
    """A library copy whose bytes changed since the manifest recorded them (edited by hand)
    is not a source: the clone of it does not hash to the landing file's sha256, so the
    landing file keeps its own bytes."""
    lib = xfs_library
    data = os.urandom(MIB)
    lib.remote("a").write(b"one.png", data, OLD)
    lib.sync("a")
    edited = lib.media / "a" / "one.png"
    edited.write_bytes(b"edited" + data[6:])
    lib.remote("b").write(b"two.png", data, OLD)
    lib.sync("b")
    assert (lib.media / "b" / "two.png").read_bytes() == data
    assert not reflink.share_extents(edited, lib.media / "b" / "two.png")
    assert lib.manifest.shared.saved_bytes() == 0


def test_versions_of_a_shared_file_stay_distinct(xfs_library: Library) -> None:
    """Two names sharing blocks: when one gets new bytes (its old copy moved to
    `.versions/`), the other keeps its bytes, and the version holds the old ones."""
    lib = xfs_library
    data = os.urandom(MIB)
    lib.remote("a").write(b"x.png", data, OLD)
    lib.remote("a").write(b"y.png", data, OLD)
    lib.sync("a")
    x, y = lib.media / "a" / "x.png", lib.media / "a" / "y.png"
    assert reflink.share_extents(x, y)
    lib.remote("a").write(b"y.png", b"new bytes", OLD + 100)
    lib.sync("a")
    assert x.read_bytes() == data and y.read_bytes() == b"new bytes"
    (version,) = (lib.media / "a" / ".versions").iterdir()
    assert version.read_bytes() == data


def test_hardlink_mode_links_read_only_and_new_bytes_never_reach_the_other_name(
    xfs_hardlink_library: Library,
) -> None:
    """`dedupe: hardlink`: the duplicate is a second name of the first copy's inode, made
    read-only; when one name gets new bytes they land as a new inode (the other name and
    the version moved aside keep the old bytes, still read-only)."""
    lib = xfs_hardlink_library
    data = os.urandom(MIB)
    lib.remote("a").write(b"x.png", data, OLD)
    lib.remote("b").write(b"y.png", data, OLD)
    lib.sync("a")
    lib.sync("b")
    x, y = lib.media / "a" / "x.png", lib.media / "b" / "y.png"
    assert os.stat(x).st_ino == os.stat(y).st_ino
    assert stat.S_IMODE(os.stat(x).st_mode) & 0o222 == 0
    lib.remote("b").write(b"y.png", b"changed", OLD + 100)
    lib.sync("b")
    assert x.read_bytes() == data and y.read_bytes() == b"changed"
    assert os.stat(x).st_ino != os.stat(y).st_ino
    (version,) = (lib.media / "b" / ".versions").iterdir()
    assert version.read_bytes() == data and os.stat(version).st_ino == os.stat(x).st_ino
    assert stat.S_IMODE(os.stat(version).st_mode) & 0o222 == 0


def test_without_reflinks_copies_are_kept_and_said_once(plain_library: Library) -> None:
    """On a filesystem that cannot reflink (ext4, tmpfs), duplicates land as copies with
    their bytes, and `dedupe_unavailable` is logged once for the library, not per file."""
    lib = plain_library
    data = os.urandom(MIB)
    lib.remote("a").write(b"one.png", data, OLD)
    lib.sync("a")
    for n in range(3):
        lib.remote("b").write(b"dup%d.png" % n, data, OLD)
    with structlog.testing.capture_logs() as logs:
        lib.sync("b")
        lib.remote("c").write(b"again.png", data, OLD)
        lib.sync("c")
    said = [entry for entry in logs if entry["event"] == "dedupe_unavailable"]
    assert len(said) == 1 and said[0]["library"] == os.fsdecode(lib.media)
    for n in range(3):
        assert (lib.media / "b" / f"dup{n}.png").read_bytes() == data
    assert lib.manifest.shared.saved_bytes() == 0
