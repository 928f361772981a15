"""Filesystems with and without reflinks for tests: a loop-mounted XFS image, and ext4.

`LoopFilesystem("xfs").start()` makes a sparse image file in a fresh folder under /tmp
(`truncate`), formats it (`mkfs.xfs -q`, which enables reflink by default since xfsprogs 5.1;
`mkfs.ext4 -q` for "ext4") and mounts it with `mount -o loop` (root only); `stop()` unmounts it
(lazily if it is busy), which frees the loop device, and removes the folder. A folder left by a
test run that was killed (its owner PID, in the folder's name, is gone) is unmounted and
removed by the next `start()`. Recipe: /work/shared/notes/docker-xfs-browser.md.

Helpers that need no mount:
- `reflink(src, dst)`: clone src's extents into dst with the FICLONE ioctl, as
  `cp --reflink=always` does; raises OSError (EOPNOTSUPP, EXDEV, EINVAL) where it cannot;
- `can_reflink(folder)`: whether FICLONE works in that folder;
- `extents(path)`: the file's extents from the FIEMAP ioctl (`filefrag -e` reads the same);
- `share_extents(a, b)`: whether two files share a physical block (a reflink or dedupe).

`mount_or_skip(kind)` is what fixtures call: a started filesystem, or a skip saying why not
(a failure with CI=true).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000
_FIEMAP_HEAD = struct.Struct("=QQLLLL")  # start, length, flags, mapped, count, reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQLLLL")  # logical, physical, length, 2 reserved, flags
PREFIX = "forge-fs-"
MKFS = {"xfs": ["mkfs.xfs", "-q"], "ext4": ["mkfs.ext4", "-q", "-F"]}
SIZE_MB = {"xfs": 320, "ext4": 64}  # XFS refuses images under 300 MB; sparse: no disk used


@dataclass(frozen=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def shared(self) -> bool:
        return bool(self.flags & FIEMAP_EXTENT_SHARED)


def reflink(source: Path, dest: Path) -> None:
    """Make dest (created or truncated) share source's blocks. Raise OSError where the
    filesystem cannot (EOPNOTSUPP, EXDEV across filesystems, EINVAL)."""
    with open(source, "rb") as src, open(dest, "wb") as dst:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())


def can_reflink(folder: Path) -> bool:
    """Return whether files in `folder` can share blocks (a FICLONE of a probe file)."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".reflink-probe-") as probe:
        source, dest = Path(probe) / "a", Path(probe) / "b"
        source.write_bytes(b"x" * 4096)
        try:
            reflink(source, dest)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL):
                return False
            raise
        return True


def extents(path: Path, max_extents: int = 512) -> list[Extent]:
    """Return the file's extents (logical and physical offsets, length, flags) as FIEMAP
    reports them after a sync of the file."""
    request = bytearray(_FIEMAP_HEAD.size + max_extents * _FIEMAP_EXTENT.size)
    _FIEMAP_HEAD.pack_into(request, 0, 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, max_extents, 0)
    with open(path, "rb") as handle:
        fcntl.ioctl(handle.fileno(), FS_IOC_FIEMAP, request)
    mapped = _FIEMAP_HEAD.unpack_from(request, 0)[3]
    found = []
    for n in range(mapped):
        fields = _FIEMAP_EXTENT.unpack_from(request, _FIEMAP_HEAD.size + n * _FIEMAP_EXTENT.size)
        found.append(Extent(fields[0], fields[1], fields[2], fields[5]))
    return found


def share_extents(a: Path, b: Path) -> bool:
    """Return whether files a and b have any physical block in common."""
    ranges = [(e.physical, e.physical + e.length) for e in extents(a)]
    return any(
        start < e.physical + e.length and e.physical < end
        for e in extents(b)
        for start, end in ranges
    )


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]))
    return points


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(base: Path = Path("/tmp")) -> list[Path]:
    """Unmount and remove the folders of test filesystems whose owner process is gone (a run
    killed before its teardown); return them."""
    reaped = []
    for folder in base.glob(f"{PREFIX}*"):
        match = re.fullmatch(rf"{PREFIX}(\d+)-.*", folder.name)
        if not match or _pid_alive(int(match[1])):
            continue
        for point in reversed(_mount_points()):
            if point.startswith(f"{folder}/"):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
    return reaped


def missing_reason(kind: str = "xfs") -> str | None:
    """Return why a loop-mounted `kind` filesystem cannot be made here, or None."""
    if os.geteuid() != 0:
        return "loop mounts need root"
    if shutil.which(MKFS[kind][0]) is None:
        package = "xfsprogs" if kind == "xfs" else "e2fsprogs"
        return f"{MKFS[kind][0]} not found: apt-get install {package} (scripts/bootstrap.sh does)"
    if not Path("/dev/loop-control").exists():
        return "no loop devices here (/dev/loop-control is missing)"
    return None


@dataclass
class LoopFilesystem:
    """One loop-mounted filesystem image of `kind` ("xfs" or "ext4") of `size_mb` MB."""

    kind: str = "xfs"
    size_mb: int = 0
    workdir: Path | None = None
    owner_pid: int = 0  # named in the folder (default: this process), for `reap_stale`

    @property
    def root(self) -> Path:
        assert self.workdir is not None, "start() it first"
        return self.workdir

    @property
    def image(self) -> Path:
        return self.root / f"{self.kind}.img"

    @property
    def mountpoint(self) -> Path:
        return self.root / "mnt"

    def start(self) -> LoopFilesystem:
        """Make, format and mount the image; return self. Raise CalledProcessError (its
        stderr included) if a step fails, after undoing the others."""
        reap_stale()
        owner = self.owner_pid or os.getpid()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner}-", dir="/tmp"))
        try:
            size = self.size_mb or SIZE_MB[self.kind]
            subprocess.run(["truncate", "-s", f"{size}M", str(self.image)], check=True)
            subprocess.run([*MKFS[self.kind], str(self.image)], check=True, capture_output=True)
            self.mountpoint.mkdir()
            subprocess.run(
                ["mount", "-o", "loop", str(self.image), str(self.mountpoint)],
                check=True,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, OSError):
            self.stop()
            raise
        return self

    def mounted(self) -> bool:
        return self.workdir is not None and str(self.mountpoint) in _mount_points()

    def stop(self) -> None:
        """Unmount (lazily if busy) and remove the folder; idempotent."""
        if self.workdir is None:
            return
        if self.mounted():
            done = subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.workdir)

    def loop_device(self) -> str | None:
        """Return the loop device backing the image (`/dev/loopN`), or None."""
        done = subprocess.run(
            ["losetup", "-j", str(self.image)], capture_output=True, text=True, check=False
        )
        return done.stdout.split(":", 1)[0] or None


def mount_or_skip(kind: str = "xfs") -> LoopFilesystem:
    """Return a started loop filesystem of `kind`, or skip the calling test saying why."""
    reason = missing_reason(kind)
    if reason is None:
        try:
            return LoopFilesystem(kind).start()
        except (subprocess.CalledProcessError, OSError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            reason = f"could not mount a {kind} image: {exc} {stderr.decode(errors='replace')}"
    if os.environ.get("CI") == "true":  # a CI runs as root with xfsprogs: a failure there
        pytest.fail(f"{kind} tier cannot run: {reason.strip()} (CI=true)", pytrace=False)
    pytest.skip(f"{kind} tier skipped: {reason.strip()}")
    raise AssertionError("unreachable")
