"""One process per state folder: the lock every forge-syncd mode that writes the state holds.

The daemon, `--once`, `--once --drain` and `--backfill` each hold an exclusive `flock` on
`<state_dir>/forge-syncd.lock` for as long as they run; the file records the holder's pid
and mode ("1234 daemon"). A second process on the same state (whatever its socket path)
finds the lock taken and refuses, naming the holder. The kernel releases a `flock` when its
holder dies, even by SIGKILL: a lock file left behind never blocks anyone. The descriptor
is not inherited by the commands the daemon runs (close-on-exec), so a child that outlives
its daemon cannot hold the lock either.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "forge-syncd.lock"
# A holder writes its pid right after taking the lock: a reader that finds the file empty
# (between the two) looks again, this often.
READ_TRIES = 20
READ_PAUSE_S = 0.05


class StateBusy(Exception):
    """Another live process holds the state's lock: its pid and mode when it wrote them."""

    def __init__(self, path: Path, pid: int | None, mode: str | None) -> None:
        super().__init__(f"{path} is locked by pid {pid if pid is not None else '?'}")
        self.path = path
        self.pid = pid
        self.mode = mode


class StateLock:
    """A held lock on a state folder; `release()` (or the process's end) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd

    @classmethod
    def acquire(cls, state_dir: Path, mode: str) -> StateLock:
        """Given a state folder (created if missing) and what this process is ("daemon",
        "once", "drain", "backfill"), take its lock and record our pid and mode. Raise
        StateBusy if a live process holds it, OSError if the folder or file cannot be
        made or opened."""
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        path = state_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
            writable = True
        except PermissionError:
            # Someone else's state we may read: the lock still tells whether it is in use
            # (writing the state will then fail with its own clear error).
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, holder = read_holder(fd)
            os.close(fd)
            raise StateBusy(path, pid, holder) from None
        except BaseException:
            os.close(fd)
            raise
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {mode}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Let the lock go (closing the file releases the flock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_holder(fd: int) -> tuple[int | None, str | None]:
    """Return (pid, mode) that the lock's holder recorded, or (None, None) if it wrote
    nothing readable (yet)."""
    for attempt in range(READ_TRIES):
        words = os.pread(fd, 100, 0).decode("ascii", "replace").split()
        if words and words[0].isdigit():
            return int(words[0]), (words[1] if len(words) > 1 else None)
        if attempt + 1 < READ_TRIES:
            time.sleep(READ_PAUSE_S)
    return None, None


def refusal(busy: StateBusy, mode: str, state_dir: Path, drain_args: str = "NAME") -> str:
    """Given who holds the lock, what we wanted to run and (for a drain) the arguments of
    the `forge-syncctl drain` that does it, return the one line that says why we do not
    start and what to do instead."""
    pid = busy.pid if busy.pid is not None else "?"
    if busy.mode not in (None, "daemon"):
        what = "--once --drain" if busy.mode == "drain" else f"--{busy.mode}"
        return (
            f"forge-syncd {what} (pid {pid}) is running on {state_dir}: "
            "run this again when it has finished"
        )
    holder = f"forge-syncd (pid {pid})"
    if mode == "daemon":
        return f"{holder} is already running on {state_dir}"
    if mode == "drain":
        return f"{holder} is running: use forge-syncctl drain {drain_args}"
    if mode == "backfill":
        return (
            f"{holder} is running: stop it (systemctl stop forge-syncd), run --backfill, "
            "then start it again"
        )
    return f"{holder} is running: use forge-syncctl sync --wait"
