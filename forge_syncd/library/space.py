"""Whether the library's filesystem has room for a fetch: bytes and inodes (each file takes
one; many small files can run out of inodes first), a reserve of each always kept."""

from __future__ import annotations

from forge_syncd.library import localfs
from forge_syncd.paths import display

DISK_RESERVE = 64 * 1024 * 1024  # never fill the library's disk to the last byte
INODE_RESERVE = 1000  # nor use its last inodes


def no_room(folder: bytes, files: int, size: int) -> str | None:
    """Given a library folder and a fetch (`files` files of `size` bytes in all), return
    why the folder's filesystem has no room for it, or None when it has."""
    free = localfs.free_bytes(folder)
    if size + DISK_RESERVE > free:
        return (
            f"{size} bytes to fetch but only {free} free at "
            f"{display(folder)} (keeping {DISK_RESERVE} in reserve)"
        )
    inodes = localfs.free_inodes(folder)
    if inodes is not None and files + INODE_RESERVE > inodes:
        return (
            f"{files} files to fetch but only {inodes} free inodes at "
            f"{display(folder)} (keeping {INODE_RESERVE} in reserve)"
        )
    return None
