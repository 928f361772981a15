"""Replace a small file atomically: a reader sees the old bytes or the new, never a mix,
and after a crash the file is one or the other."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Given a path, its new bytes and the mode a new file gets, write a temporary file
    beside it (never following a link, never reusing a name), fsync it, rename it over
    `path` and fsync the folder. Raise OSError (the temporary file is then gone)."""
    temp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> None:
    """Make a rename or an unlink inside `folder` durable (the one copy of this rule: the
    library's writers use it through `library/localfs.py`)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
