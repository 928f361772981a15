"""The reflink fixtures (tests/support/reflink.py): a loop-mounted XFS shares blocks between
copies, ext4 refuses, the extent helpers see the difference, and the mounts go away."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import reflink
from tests.support.reflink import LoopFilesystem

MIB = 1024 * 1024


def test_xfs_clones_share_blocks_until_written(reflink_dir: Path) -> None:
    """On the XFS mount a FICLONE copy and `cp --reflink=always` have the same bytes and share
    every block (FIEMAP flags them shared); writing into a clone changes only the clone
    (copy on write); a copy written byte by byte shares nothing."""
    original = reflink_dir / "original.png"
    data = os.urandom(4 * MIB)
    original.write_bytes(data)
    clone, by_cp, plain = (reflink_dir / name for name in ("clone", "by-cp", "plain"))
    reflink.reflink(original, clone)
    subprocess.run(["cp", "--reflink=always", str(original), str(by_cp)], check=True)
    plain.write_bytes(original.read_bytes())
    assert clone.read_bytes() == by_cp.read_bytes() == data
    assert reflink.share_extents(original, clone) and reflink.share_extents(original, by_cp)
    assert all(extent.shared for extent in reflink.extents(clone))
    assert not reflink.share_extents(original, plain)
    assert not any(extent.shared for extent in reflink.extents(plain))
    with open(clone, "r+b") as handle:
        handle.seek(MIB)
        handle.write(b"\0" * 4096)
    assert original.read_bytes() == data
    assert clone.read_bytes() == data[:MIB] + b"\0" * 4096 + data[MIB + 4096 :]
    assert reflink.share_extents(original, clone)  # the untouched blocks are still shared
    assert reflink.can_reflink(reflink_dir)


def test_filefrag_agrees_that_a_clone_is_shared(reflink_dir: Path) -> None:
    """`filefrag -e -v` (e2fsprogs) flags the clone's extents `shared`, as the FIEMAP
    helper does."""
    original, clone = reflink_dir / "a", reflink_dir / "b"
    original.write_bytes(os.urandom(MIB))
    reflink.reflink(original, clone)
    report = subprocess.run(
        ["filefrag", "-e", "-v", str(clone)], capture_output=True, text=True, check=True
    ).stdout
    assert "shared" in report


def test_ext4_cannot_share_blocks(no_reflink_dir: Path) -> None:
    """On ext4 FICLONE fails with EOPNOTSUPP (or a kin), `cp --reflink=always` fails, and
    `can_reflink` says no: the no-reflink case (copies kept)."""
    original = no_reflink_dir / "original"
    original.write_bytes(os.urandom(MIB))
    assert not reflink.can_reflink(no_reflink_dir)
    with pytest.raises(OSError) as raised:
        reflink.reflink(original, no_reflink_dir / "clone")
    assert raised.value.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL)
    done = subprocess.run(
        ["cp", "--reflink=always", str(original), str(no_reflink_dir / "by-cp")],
        capture_output=True,
        check=False,
    )
    assert done.returncode != 0


def test_a_clone_across_filesystems_is_refused(reflink_dir: Path, no_reflink_dir: Path) -> None:
    """A clone from the XFS mount into a folder of another filesystem fails with EXDEV."""
    original = reflink_dir / "original"
    original.write_bytes(b"x" * 8192)
    with pytest.raises(OSError) as raised:
        reflink.reflink(original, no_reflink_dir / "clone")
    assert raised.value.errno == errno.EXDEV


def test_a_busy_mount_is_unmounted_lazily_and_the_loop_device_freed() -> None:
    """`stop()` unmounts the image and removes its folder even while a file on it is open
    (a lazy unmount); the loop device is released once that file is closed."""
    reason = reflink.missing_reason("xfs")
    if reason is not None:
        pytest.skip(reason)
    filesystem = LoopFilesystem("xfs").start()
    device = filesystem.loop_device()
    assert device is not None and filesystem.mounted()
    busy = open(filesystem.mountpoint / "open-file", "wb")  # noqa: SIM115
    try:
        filesystem.stop()
        assert not filesystem.mounted()
        assert not filesystem.root.exists()
    finally:
        busy.close()
    backing = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
    assert not backing.exists() or str(filesystem.root) not in backing.read_text()


def test_a_filesystem_left_by_a_killed_run_is_reaped() -> None:
    """A mount whose owner process is gone (a run killed before its teardown) is unmounted
    and its folder removed by `reap_stale` (which every `start()` calls)."""
    reason = reflink.missing_reason("ext4")
    if reason is not None:
        pytest.skip(reason)
    gone = subprocess.Popen(["true"])
    gone.wait()
    filesystem = LoopFilesystem("ext4", owner_pid=gone.pid).start()
    try:
        assert filesystem.mounted()
        assert filesystem.root in reflink.reap_stale()
        assert not filesystem.mounted() and not filesystem.root.exists()
    finally:
        filesystem.stop()
