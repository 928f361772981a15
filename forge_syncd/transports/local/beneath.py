"""Open a listed file of the source folder without ever following a link.

The source folder is as untrusted as a container: another user (or a container, through a
bind mount) may swap a folder on a listed path for a symlink between the listing and the
copy, to have this daemon read or delete a file it can reach and they cannot (its own
identity file, say). Every path is therefore opened from the root's descriptor one
component at a time, each folder with O_NOFOLLOW | O_DIRECTORY and the file with O_NOFOLLOW:
a link anywhere on the path fails with ELOOP / ENOTDIR, never followed.
"""

from __future__ import annotations

import os
import stat

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a listed name must not block the open.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def open_root(root: str) -> int:
    """Open the configured root folder (the administrator's path: links in it are theirs).
    Raise OSError."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_parent(root_fd: int, path: bytes) -> tuple[int, bytes]:
    """Given the root's descriptor and a relative path, return a new descriptor of the
    path's folder (opened without following a link) and the file's name in it. Raise
    OSError (ELOOP, ENOTDIR: a link on the path; ENOENT: gone)."""
    parts = path.split(b"/")
    if any(part in (b"", b".", b"..") for part in parts):
        raise OSError(0, "not a plain relative path")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            child = os.open(part, FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError:
        os.close(fd)
        raise
    return fd, parts[-1]


def open_file(root_fd: int, path: bytes) -> int:
    """Given the root's descriptor and a relative path, return a read-only descriptor of the
    regular file there, never through a link. Raise OSError (IsADirectoryError or ELOOP
    included; a FIFO, socket or device: OSError ENXIO-like "not a regular file")."""
    parent, name = open_parent(root_fd, path)
    try:
        return open_in(parent, name)[0]
    finally:
        os.close(parent)


def open_in(parent: int, name: bytes) -> tuple[int, os.stat_result]:
    """Given a folder's descriptor (opened by `open_parent`) and a name in it, return a
    read-only descriptor of the regular file there (never through a link) and its stat.
    Raise OSError as `open_file`."""
    fd = os.open(name, FILE_FLAGS, dir_fd=parent)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
    except OSError:
        os.close(fd)
        raise
    return fd, info


class Parents:
    """The folders of one copy's files, each opened once by `open_parent` and kept open
    (at most MAX_PARENTS at a time): a descriptor stays on the folder it opened, so a link
    planted on its path later is never followed either."""

    MAX_PARENTS = 64

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.open: dict[bytes, int] = {}

    def open_file(self, path: bytes) -> tuple[int, os.stat_result]:
        """As `open_file`, returning the file's stat too."""
        folder, _, name = path.rpartition(b"/")
        parent = self.open.get(folder)
        if name in (b"", b".", b".."):
            raise OSError(0, "not a plain relative path")
        if parent is None:
            if len(self.open) >= self.MAX_PARENTS:
                self.close()
            parent, name = open_parent(self.root_fd, path)
            self.open[folder] = parent
        return open_in(parent, name)

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()
