"""Sharing one file's blocks with another, never losing bytes (`library.dedupe`).

A shared copy is always made under a temporary name beside its target (`localfs.
temp_path_for`: a crash leaves only a temp file the next run removes), checked (the sha256
of what the temp holds must be the one wanted: a library file changed since the manifest
recorded it is never shared), fsynced, and only then renamed over the name it replaces.
So a kill -9 at any moment leaves either the old copy or the shared one under each name,
never a half-shared file.

- `reflink`: the FICLONE ioctl (what `cp --reflink=always` does; XFS, btrfs): the new
  inode shares the source's blocks copy-on-write, so a later change to either name never
  shows in the other.
- `hardlink`: a second name of the same inode. Nothing in forge-syncd writes a library file
  in place (new bytes are a temp file renamed over the name; versions move by rename), and
  the shared inode is made read-only (`readonly_mode`), so no other program does by mistake.
- `copy`: the bytes copied (the remote-hash shortcut where blocks cannot be shared).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import struct

from forge_syncd.library import localfs

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
# What FICLONE answers where the filesystem cannot share blocks (ext4, tmpfs: EOPNOTSUPP or
# ENOTTY; another filesystem: EXDEV; mismatched block sizes or alignment: EINVAL).
NO_REFLINK = frozenset((errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS))
FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC = 0x1
_FIEMAP_HEAD = struct.Struct("=QQLLLL")  # start, length, flags, mapped, count, reserved
_FIEMAP_EXTENT = struct.Struct("=QQQQQLLLL")  # logical, physical, length, 2 reserved, flags
MAX_EXTENTS = 256
CHUNK = 1024 * 1024
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class ReflinkUnavailable(OSError):
    """The filesystem cannot share blocks between these two files."""


class NotTheBytes(Exception):
    """What the temp file holds does not hash to the wanted sha256 (the source changed)."""


def readonly_mode(mode: int) -> int:
    """Return `mode` (permission bits) without any write bit: a hard-linked file's."""
    return stat.S_IMODE(mode) & ~0o222


def clone(source: bytes, beside: bytes) -> bytes:
    """Make a new temp file beside `beside` that shares `source`'s blocks (FICLONE); return
    its path. Raise ReflinkUnavailable where the filesystem cannot, OSError otherwise."""
    temp = localfs.temp_path_for(beside)
    fd = localfs.open_temp(temp)
    try:
        src = os.open(source, READ_FLAGS)
        try:
            fcntl.ioctl(fd, FICLONE, src)
        finally:
            os.close(src)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink_quietly(temp)
        if exc.errno in NO_REFLINK:
            raise ReflinkUnavailable(exc.errno, f"no reflink: {exc.strerror}") from exc
        raise
    os.close(fd)
    return temp


def link(source: bytes, beside: bytes) -> bytes:
    """Make a new name beside `beside` for `source`'s inode; return it. Raise OSError."""
    temp = localfs.temp_path_for(beside)
    os.link(source, temp, follow_symlinks=False)
    return temp


def copy(source: bytes, beside: bytes) -> bytes:
    """Copy `source`'s bytes to a new temp file beside `beside` (fsynced); return its path.
    Raise OSError."""
    temp = localfs.temp_path_for(beside)
    fd = localfs.open_temp(temp)
    try:
        src = os.open(source, READ_FLAGS)
        try:
            while chunk := os.read(src, CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(src)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    os.close(fd)
    return temp


def sha256_of(path: bytes) -> str:
    """Return the sha256 of a file (never following a link). Raise OSError."""
    digest = hashlib.sha256()
    fd = os.open(path, READ_FLAGS)
    try:
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def checked(temp: bytes, sha256: str) -> bytes:
    """Return `temp` if its bytes hash to `sha256`; else delete it and raise NotTheBytes."""
    try:
        found = sha256_of(temp)
    except OSError:
        _unlink_quietly(temp)
        raise
    if found != sha256:
        _unlink_quietly(temp)
        raise NotTheBytes(f"the source's sha256 is {found}, not {sha256}")
    return temp


def make_readonly(path: bytes) -> None:
    """Take the write bits off a (hard-linked) file's inode."""
    fd = os.open(path, READ_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_IMODE(mode) != readonly_mode(mode):
            os.fchmod(fd, readonly_mode(mode))
    finally:
        os.close(fd)


def extent_map(path: bytes) -> tuple[tuple[int, int, int], ...] | None:
    """Return the file's (logical, physical, length) extents as FIEMAP reports them after a
    sync of the file, or None where the filesystem cannot tell (or there are too many)."""
    request = bytearray(_FIEMAP_HEAD.size + MAX_EXTENTS * _FIEMAP_EXTENT.size)
    _FIEMAP_HEAD.pack_into(request, 0, 0, 2**64 - 1, FIEMAP_FLAG_SYNC, 0, MAX_EXTENTS, 0)
    try:
        fd = os.open(path, READ_FLAGS)
        try:
            fcntl.ioctl(fd, FS_IOC_FIEMAP, request)
        finally:
            os.close(fd)
    except OSError:
        return None
    mapped = _FIEMAP_HEAD.unpack_from(request, 0)[3]
    if mapped >= MAX_EXTENTS:
        return None
    extents = []
    for n in range(mapped):
        fields = _FIEMAP_EXTENT.unpack_from(request, _FIEMAP_HEAD.size + n * _FIEMAP_EXTENT.size)
        extents.append((fields[0], fields[1], fields[2]))
    return tuple(extents)


def shares_blocks(a: bytes, b: bytes) -> bool:
    """Return whether two files are one inode, or map every byte to the same blocks (a
    reflink made before)."""
    if same_inode(a, b):
        return True
    first = extent_map(a)
    return bool(first) and first == extent_map(b)


def same_inode(a: bytes, b: bytes) -> bool:
    """Return whether two names are one inode (False if either is missing)."""
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
    except OSError:
        return False


def _unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
