"""Open the files the catalog lists, and only those, and answer `Range` requests.

No part of a request becomes a path: `/file/<id>` names a catalog row, and its `local_path`
is opened only when it lies under media_root, component by component from media_root with
O_NOFOLLOW (a symbolic link anywhere below media_root is refused, as are `..`, `.` and empty
components) and only when it is a regular file.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 256 * 1024
# Served inline: images and videos a browser shows without running anything (not SVG).
INLINE_TYPES = re.compile(r"^(image/(png|jpeg|gif|webp|avif)|video/(mp4|webm|x-matroska))$")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Refused(Exception):
    """A row's file is not served (the message says why, without the path)."""


@dataclass(frozen=True)
class Opened:
    fd: int
    size: int
    content_type: str
    inline: bool


def open_listed(media_root: Path, local_path: str) -> Opened:
    """Given media_root and a catalog row's `local_path`, open that file read-only. Raise
    Refused when the path is not under media_root, has a `..`/`.`/empty component, passes
    through a symbolic link, or is not a regular file; OSError when it cannot be opened."""
    raw = os.fsencode(local_path)
    root = os.fsencode(media_root).rstrip(b"/") + b"/"
    if not raw.startswith(root):
        raise Refused("not under media_root")
    parts = raw[len(root) :].split(b"/")
    if any(part in (b"", b".", b"..") for part in parts):
        raise Refused("not a plain path under media_root")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder
                )
            except OSError as exc:
                raise Refused("a folder of its path is a link or missing") from exc
            os.close(folder)
            folder = inner
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            fd = os.open(parts[-1], flags, dir_fd=folder)
        except OSError as exc:
            raise Refused("a link or missing") from exc
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Refused("not a regular file")
    guessed = mimetypes.guess_type(os.fsdecode(parts[-1]))[0] or "application/octet-stream"
    inline = bool(INLINE_TYPES.match(guessed))
    return Opened(fd, info.st_size, guessed if inline else "application/octet-stream", inline)


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """Given a `Range` header and the file's size, return (first, last) inclusive for one
    satisfiable byte range, None to send the whole file (no header, or several ranges,
    or a unit other than bytes), False when it cannot be satisfied (416)."""
    if header is None or "," in header:
        return None
    found = RANGE.match(header.strip())
    if found is None:
        return None if not header.strip().startswith("bytes=") else False
    first, last = found.groups()
    if not first and not last:
        return False
    if not first:  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return False
        return max(0, size - count), size - 1
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or end < start:
        return False
    return start, end


def read_span(fd: int, first: int, last: int) -> Iterator[bytes]:
    """The bytes first..last (inclusive) of an open file, in chunks; closes it at the end."""
    try:
        offset = first
        while offset <= last:
            chunk = os.pread(fd, min(CHUNK, last - offset + 1), offset)
            if not chunk:
                return
            offset += len(chunk)
            yield chunk
    finally:
        os.close(fd)
