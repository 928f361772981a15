"""Secrets of the notification sinks: read from files named in the config, never from the
config itself, never logged.

A secret file holds one line (a token, or a Discord webhook URL, which carries its token). It
must be a regular file we can read, at most `MAX_SECRET` bytes, and private: others may not
read or write it and its group may not write it (the rule `ssh.identity_file` follows; the
group may read it, so root can own it and share it with the daemon's group: 0640). The
config loader refuses a file that breaks the rule, at start and on every reload; the sink
reads the file again whenever it changed (inode, size or mtime), so a rotated token is used
from the next message on. What is wrong with a file is said by its path and mode, never by
its content.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_SECRET = 4096
LOOSE_BITS: tuple[tuple[int, str], ...] = (
    (stat.S_IROTH, "others can read it"),
    (stat.S_IWOTH, "others can write it"),
    (stat.S_IWGRP, "its group can write it"),
)


class SecretUnavailable(Exception):
    """A secret file cannot be used now; the message names the file, not its content."""


def secret_file_problem(path: Path, what: str = "secret file") -> str | None:
    """Given a secret file's path, return why it cannot be used (missing, unreadable, not
    a regular file, readable or writable by others, writable by its group, empty, several
    lines, too large), or None when it is fine. Reads the file; never quotes it."""
    try:
        read_secret(path, what)
    except SecretUnavailable as exc:
        return str(exc)
    return None


def read_secret(path: Path, what: str = "secret file") -> str:
    """Given a secret file's path, return its one line (surrounding whitespace removed).
    Raise SecretUnavailable naming the file and what is wrong with it."""
    try:
        # Non-blocking: a FIFO put in its place must not hang the daemon (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SecretUnavailable(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretUnavailable(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        loose = [why for bit, why in LOOSE_BITS if mode & bit]
        if loose:
            raise SecretUnavailable(
                f"{what} {path} has mode {mode:04o} ({', '.join(loose)}): a secret every"
                " user could read or change, refused; chmod 600 (or 640 to share it with the"
                " daemon's group)"
            )
        data = os.read(fd, MAX_SECRET + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET:
        raise SecretUnavailable(f"{what} {path} is larger than {MAX_SECRET} bytes")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretUnavailable(f"{what} {path} is not UTF-8 text") from None
    if not text:
        raise SecretUnavailable(f"{what} {path} is empty")
    if any(c in text for c in "\r\n\0"):
        raise SecretUnavailable(f"{what} {path} holds more than one line")
    return text


@dataclass
class SecretFile:
    """A secret file, read again when it changes (rotation without a restart)."""

    path: Path
    what: str = "secret file"
    _seen: tuple[int, int, int, int] | None = None
    _value: str | None = None

    def value(self) -> str:
        """Return the secret, re-read if the file changed since the last read. Raise
        SecretUnavailable when it cannot be used now."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise SecretUnavailable(
                f"{self.what} {self.path} cannot be read: {exc.strerror or exc}"
            ) from None
        seen = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
        if self._value is None or seen != self._seen:
            self._value = read_secret(self.path, self.what)
            self._seen = seen
        return self._value
