"""Hash and delete files of a local source folder, in this process: every path opened
from the root without following a link (`beneath.py`).

A delete is the remote delete script's rule (`transports/shell/delete.py`), kept here to the
letter: a file is deleted only if it still has its listed size and mtime and its bytes,
hashed at that moment through the descriptor that was checked, hash to the library copy's
sha256; and only if it is still the very file that was hashed (same inode, size, mtime and
ctime before the hash, after it, and just before the unlink).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Mapping, Sequence

from forge_syncd.mtimes import same_mtime
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import Deleted, RemoteFile
from forge_syncd.transports.local.beneath import FILE_FLAGS, open_file, open_parent

CHUNK = 1024 * 1024


def sha256_of(fd: int, cancel: threading.Event | None = None) -> str:
    """Return the sha256 of what `fd` reads from where it is to its end. Raise
    RemoteError("cancelled") when `cancel` is set first."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while count := os.readv(fd, [view]):
        if cancel is not None and cancel.is_set():
            raise RemoteError("cancelled")
        digest.update(view[:count])
    return digest.hexdigest()


def hash_files(
    root_fd: int, paths: Sequence[bytes], cancel: threading.Event | None = None
) -> dict[bytes, str]:
    """Return {path: sha256} of the regular files at `paths`; one that is gone, is not a
    regular file or cannot be read is left out."""
    found: dict[bytes, str] = {}
    for path in paths:
        if cancel is not None and cancel.is_set():
            raise RemoteError("cancelled")
        try:
            fd = open_file(root_fd, path)
        except OSError:
            continue
        try:
            found[path] = sha256_of(fd, cancel)
        except OSError:
            continue
        finally:
            os.close(fd)
    return found


def delete_files(root_fd: int, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
    """Delete each file (one with no sha256 given never) under the rule of this module;
    return what was deleted and what holds other bytes."""
    deleted = Deleted()
    for remote in files:
        want = sha256.get(remote.path)
        if want is None:
            continue
        with contextlib.suppress(OSError):
            outcome = _delete_one(root_fd, remote, want)
            if outcome == "D":
                deleted.gone.add(remote.path)
            elif outcome == "H":
                deleted.differs.add(remote.path)
    return deleted


def _identity(info: os.stat_result) -> tuple[int, int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _delete_one(root_fd: int, remote: RemoteFile, want: str) -> str:
    """Return "D" (deleted), "H" (other bytes: kept) or "" (changed, gone: kept). Raise
    OSError."""
    parent, name = open_parent(root_fd, remote.path)
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if (
            not stat.S_ISREG(info.st_mode)
            or info.st_size != remote.size
            or not same_mtime(info.st_mtime_ns, remote.mtime_ns)
        ):
            return ""
        fd = os.open(name, FILE_FLAGS, dir_fd=parent)
        try:
            held = os.fstat(fd)
            if (held.st_dev, held.st_ino) != (info.st_dev, info.st_ino):
                return ""
            digest = sha256_of(fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if digest != want:
            return "H"
        now = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not _identity(held) == _identity(after) == _identity(now):
            return ""
        os.unlink(name, dir_fd=parent)
        return "D"
    finally:
        os.close(parent)
