"""Who can read the library: the modes and group of every folder and file the daemon makes.

`library: {group, file_mode, dir_mode}` is one setting for the whole process (a restart
applies a change), so it is held here, set once at start by `configure`, and applied by
the few functions that create things in the library (`localfs.ensure_folder`,
`localfs.open_temp`, `make_folders`). Modes are applied explicitly after each creation, so
the process's umask (the unit's `UMask=0027`) cannot narrow them; a call is made only when
the result differs, so under the unit's sandbox (no chown, no chmod setting the setgid bit)
a folder that inherited its parent's setgid group and the default mode needs none. When the
filesystem or the sandbox refuses, what was made stays (the bytes are safe) and
`library_modes_refused` is logged once.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
import threading
from dataclasses import dataclass

from forge_syncd.config.model import LibraryConfig
from forge_syncd.logs import get_logger


class LibraryError(Exception):
    """The library's group cannot be used by this process."""


@dataclass(frozen=True)
class LibraryModes:
    """What the daemon gives what it makes: `gid` None keeps the process's own group."""

    file_mode: int = 0o640
    dir_mode: int = 0o2750
    gid: int | None = None


_modes = LibraryModes()
_refused_logged = threading.Event()
REFUSED = (errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EROFS)


def current() -> LibraryModes:
    """Return the modes in force."""
    return _modes


def set_modes(modes: LibraryModes) -> None:
    """Make `modes` the ones applied from now on (at start; tests)."""
    global _modes
    _modes = modes


def resolve(config: LibraryConfig, euid: int, groups: set[int]) -> LibraryModes:
    """Given the `library:` config and this process's effective uid and groups (primary and
    supplementary), return the modes to apply. Raise LibraryError when the group does not
    exist, or this process is neither root nor a member (it could not give it to what it
    makes, and setgid folders would lose their bit)."""
    if config.group is None:
        return LibraryModes(config.file_mode, config.dir_mode, None)
    try:
        gid = grp.getgrnam(config.group).gr_gid
    except KeyError:
        raise LibraryError(f"library.group: no group {config.group!r} on this system") from None
    if euid != 0 and gid not in groups:
        try:
            user = pwd.getpwuid(euid).pw_name
        except KeyError:
            user = str(euid)
        raise LibraryError(
            f"library.group: this process (user {user}) is not a member of group"
            f" {config.group!r}: add it (usermod -aG {config.group} {user}, or"
            f" SupplementaryGroups={config.group} in the unit), then restart"
        )
    return LibraryModes(config.file_mode, config.dir_mode, gid)


def configure(config: LibraryConfig) -> LibraryModes:
    """Resolve `config` for this process and put it in force; return it. Raise
    LibraryError (see `resolve`)."""
    modes = resolve(config, os.geteuid(), {os.getegid(), *os.getgroups()})
    set_modes(modes)
    return modes


def apply_to_fd(fd: int, path: bytes, folder: bool) -> None:
    """Give the just-made file or folder open as `fd` its group and mode, where they differ
    (the group first: changing a folder's group may clear its setgid bit)."""
    modes = _modes
    wanted = modes.dir_mode if folder else modes.file_mode
    try:
        info = os.fstat(fd)
        if modes.gid is not None and info.st_gid != modes.gid:
            os.fchown(fd, -1, modes.gid)
            info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) != wanted:
            os.fchmod(fd, wanted)
    except OSError as exc:
        if exc.errno not in REFUSED:
            raise
        _log_refused(path, exc)


def apply_to_path(path: bytes, folder: bool) -> None:
    """As `apply_to_fd`, for a path (never following a symbolic link)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(path, flags | (os.O_DIRECTORY if folder else 0))
    try:
        apply_to_fd(fd, path, folder)
    finally:
        os.close(fd)


def make_folders(base: bytes, folder: bytes) -> None:
    """Create `folder` and each missing folder from `base` (included; its parent must
    exist) down to it, each with the library's mode and group. A folder another thread
    made meanwhile is fine. Raise OSError if a component exists and is not a folder."""
    missing = []
    probe = folder.rstrip(b"/")
    base = base.rstrip(b"/")
    while len(probe) >= len(base) and not os.path.isdir(probe):
        missing.append(probe)
        probe = os.path.dirname(probe)
    for path in reversed(missing):
        try:
            os.mkdir(path, _modes.dir_mode & 0o777)
        except FileExistsError:
            if not os.path.isdir(path):
                raise
            continue
        apply_to_path(path, folder=True)


def _log_refused(path: bytes, exc: OSError) -> None:
    if not _refused_logged.is_set():
        _refused_logged.set()
        get_logger().warning(
            "library_modes_refused",
            path=os.fsdecode(path),
            error=f"cannot set the library's group or mode: {exc.strerror}; the file is kept"
            " as made (see README, 'Who can read the library')",
        )
