"""Names from a container are untrusted bytes. These pure checks decide which we accept."""

from __future__ import annotations

import os
import re

# Temporary names we write beside a target while it is in flight (see localfs.py).
TEMP_NAME = re.compile(rb"^\.fs-[0-9a-f]{16}\.part$")
MAX_COMPONENT = 255
# Earlier versions of library files live in <media_root>/<container>/.versions/ (see
# versions.py): a remote name there would land among them, so it is refused.
VERSIONS_DIR = b".versions"


def unsafe_reason(path: bytes) -> str | None:
    """Given a path relative to a container's root, return why it is refused, or None.

    Refused: empty, absolute, NUL, an empty / `.` / `..` component, a component longer than
    a local file name may be, one that looks like our own temporary files, or a path in the
    folder where we keep earlier versions.
    """
    if not path:
        return "empty name"
    if b"\0" in path:
        return "name contains NUL"
    if path.startswith(b"/"):
        return "absolute path"
    for part in path.split(b"/"):
        if part in (b"", b".", b".."):
            return "name has an empty, '.' or '..' component"
        if len(part) > MAX_COMPONENT:
            return "name component longer than 255 bytes"
    if TEMP_NAME.match(path.rsplit(b"/", 1)[-1]):
        return "name collides with forge-syncd's temporary files"
    if path.split(b"/", 1)[0] == VERSIONS_DIR:
        return "name is inside forge-syncd's .versions folder"
    return None


def local_path(container_dir: bytes, relative: bytes) -> bytes:
    """Given the container's local folder and a checked relative path, return the local path.

    Raise ValueError if the result would not stay inside `container_dir` (defence in depth:
    callers have already refused unsafe names).
    """
    reason = unsafe_reason(relative)
    if reason is not None:
        raise ValueError(f"refusing {relative!r}: {reason}")
    base = os.path.normpath(container_dir)
    joined = os.path.normpath(os.path.join(base, relative))
    if not joined.startswith(base + b"/"):
        raise ValueError(f"refusing {relative!r}: escapes {container_dir!r}")
    return joined


def display(path: bytes) -> str:
    """Return a path for logs: UTF-8 where it is, backslash escapes where it is not."""
    return path.decode("utf-8", "backslashreplace")
