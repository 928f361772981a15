"""The local side of a transfer: temporary names, durability, space, stale leftovers."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import os
import queue
import secrets
import stat
import threading

# The library's writers call fsync_folder here; one copy of it, in atomicfile.py.
from forge_syncd.atomicfile import fsync_folder as fsync_folder
from forge_syncd.library import modes
from forge_syncd.paths import TEMP_NAME

# Temporary names: a random prefix per process and a counter (a random name per file cost
# a getrandom call each, ~4% of a many-small-files sync).
_TEMP_PREFIX = secrets.token_hex(4).encode()
_temp_numbers = itertools.count()


def temp_path_for(target: bytes) -> bytes:
    """Return a fresh temporary name beside `target`: hidden, ending in `.part`."""
    folder = os.path.dirname(target)
    number = b"%08x" % (next(_temp_numbers) & 0xFFFFFFFF)
    return os.path.join(folder, b".fs-" + _TEMP_PREFIX + number + b".part")


def ensure_folder(container_dir: bytes, folder: bytes) -> None:
    """Create `folder` (inside `container_dir`) and its parents; refuse to leave the container.

    Raise OSError if a component exists as a non-folder, or ValueError if the real path of
    the folder is not inside the container's folder (a planted symlink).
    """
    modes.make_folders(container_dir, folder)
    real = os.path.realpath(folder)
    base = os.path.realpath(container_dir)
    if real != base and not real.startswith(base + b"/"):
        raise ValueError(f"{folder!r} resolves outside {container_dir!r}")


def open_temp(path: bytes) -> int:
    """Open a new temporary file for writing, with the library's mode and group (so the
    file lands with them); never follow a link, never reuse a name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, modes.current().file_mode)
    try:
        modes.apply_to_fd(fd, path, folder=False)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd


def free_bytes(path: bytes) -> int:
    """Return the bytes an unprivileged writer may still use on the filesystem of `path`."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def free_inodes(path: bytes) -> int | None:
    """Return the inodes an unprivileged writer may still use on the filesystem of `path`,
    or None where the filesystem does not count them (it reports 0 files in all)."""
    info = os.statvfs(path)
    return None if info.f_files == 0 else info.f_favail


def local_size(path: bytes) -> tuple[int, int] | None:
    """Return (size, mtime_ns) of a regular local file, or None if there is none."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return info.st_size, info.st_mtime_ns


def remove_stale_temp_files(container_dir: bytes) -> int:
    """Delete temporary files a crash left under `container_dir`; return how many."""
    return sum(_unlink_temps(folder, files) for folder, _dirs, files in os.walk(container_dir))


def remove_own_temp_files(folders: list[bytes]) -> int:
    """Delete the temporary files this process left in `folders` (a failed or cancelled
    run: a thread that died, a stream that broke); return how many. Other processes'
    temporary files are left alone (their prefix differs)."""
    mine = b".fs-" + _TEMP_PREFIX
    removed = 0
    for folder in folders:
        try:
            entries = [e.name for e in os.scandir(folder) if e.name.startswith(mine)]
        except OSError:
            continue
        removed += _unlink_temps(folder, entries)
    return removed


def _unlink_temps(folder: bytes, names: list[bytes]) -> int:
    """Delete the names in `folder` that are temporary files of ours; return how many."""
    removed = 0
    for name in names:
        if TEMP_NAME.match(name):
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def sync_filesystem(path: bytes) -> None:
    """Flush every dirty page of the filesystem holding `path` to disk, in one call
    (Linux syncfs(2)); far cheaper than an fsync per file for thousands of small files."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc is None or _libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing the dirty pages, do not wait
WRITEBACK_MIN = 1024 * 1024  # smaller files are left to the batch's syncfs
WRITEBACK_QUEUED = 64  # files waiting for `start_writeback_later`'s thread, at most


def _ask_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages to disk, without waiting for
    them (Linux sync_file_range(2); it does block while the disk's queue is full). Never
    raises: durability still comes from the batch's syncfs."""
    if _libc is not None:
        with contextlib.suppress(AttributeError, OSError):
            _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), SYNC_FILE_RANGE_WRITE)


class _Writeback:
    """`start_writeback_later`: one thread that asks for files' writeback, each on a
    duplicate of its descriptor, so a reader that hands them over never waits while the
    disk's queue is full."""

    def __init__(self) -> None:
        self.fds: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def later(self, fd: int, written: int) -> None:
        """Given a file just written (`written` bytes, `fd` open), have its writeback
        started soon: the disk works while the next files arrive, and the batch's syncfs
        waits for less. Files under WRITEBACK_MIN are left to the syncfs (a request each
        would cost more than it saves), and so is any past WRITEBACK_QUEUED waiting (a
        hint only: never a descriptor for every big file at once)."""
        if written < WRITEBACK_MIN or _libc is None or self.fds.qsize() >= WRITEBACK_QUEUED:
            return
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="writeback", daemon=True)
                self.thread.start()
        with contextlib.suppress(OSError):
            self.fds.put(os.dup(fd))

    def _run(self) -> None:
        while True:
            fd = self.fds.get()
            try:
                _ask_writeback(fd)
            finally:
                os.close(fd)


start_writeback_later = _Writeback().later


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_libc = _load_libc()


RENAME_NOREPLACE = 1  # renameat2(2) flag: fail with EEXIST instead of replacing the target
AT_FDCWD = -100


def rename_noreplace(source: bytes, target: bytes) -> None:
    """Rename `source` to `target`, never replacing anything already at `target`.

    Uses renameat2(RENAME_NOREPLACE), atomic in the kernel. Raise FileExistsError if
    `target` exists, OSError for other failures. Where the kernel or filesystem lacks the
    flag (EINVAL/ENOSYS), fall back to a check then rename: callers hold the container's
    lock, so nothing of ours can race them.
    """
    if _libc is not None and hasattr(_libc, "renameat2"):
        if _libc.renameat2(AT_FDCWD, source, AT_FDCWD, target, RENAME_NOREPLACE) == 0:
            return
        error = ctypes.get_errno()
        if error not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(error, os.strerror(error), source, None, target)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)


def same_bytes(a: bytes, b: bytes) -> bool:
    """Return whether two regular files hold the same bytes (False if either is unreadable).
    Sizes are compared first, so files of different sizes cost one stat each."""
    try:
        if os.stat(a).st_size != os.stat(b).st_size:
            return False
        with open(a, "rb") as first, open(b, "rb") as second:
            while True:
                chunk = first.read(1024 * 1024)
                if chunk != second.read(1024 * 1024):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False
