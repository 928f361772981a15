"""The mirror sink: every landed file and every version, copied to an rclone remote.

`deliver(event)` only queues, in the sink's state file (`state.py`), in one transaction with
the event's (id, ts): a `file_synced` queues `<container>/<path>`, a `file_versioned` moves
the queued copy of the old bytes to their `.versions/` name (or queues that name). It returns
at once: the dispatcher's cursor never waits on a slow remote, and what is queued survives a
restart. A copier thread makes the copies (`copier.py`), the oldest first (those that failed
after the others); after a failure it waits (1 s doubling to `retry_max`) before trying
again, since what failed (a remote down or full) usually fails the next copy too.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.mirror.copier import Copier, MirrorError, Stale
from forge_syncd.events.sinks.mirror.rcd import RcloneDaemon, RcloneError
from forge_syncd.events.sinks.mirror.state import Copy, MirrorState, state_path
from forge_syncd.library.events import exact_local_path
from forge_syncd.library.hashing import file_sha256
from forge_syncd.logs import get_logger

BATCH = 50
IDLE_S = 30.0
RETRY_START_S = 1.0
RETRY_MAX_S = 300.0
# A library file missing at this many attempts in a row was deleted: its copy is dropped.
MISSING_ATTEMPTS = 5


def mirror_name(container: str, path: str) -> str | None:
    """Given a container and a path relative to its library folder (as events show it),
    return the file's name on the mirror, `<container>/<path>`; None for a name that could
    leave the mirror's folder (empty, `.` or `..` parts: never made by a sync)."""
    parts = [container, *path.split("/")]
    if any(part in ("", ".", "..") for part in parts) or "\x00" in path:
        return None
    return "/".join(parts)


class MirrorSink:
    """A mirror sink (see the module doc). Options: `remote`, `rclone_config`, `state_dir`,
    and optionally `bwlimit_bps`, `retry_max_s`, `copier` (False: queue, copy nothing)."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        if not options.get("state_dir"):
            raise ValueError(f"mirror sink {name!r} needs state_dir for its state file")
        self.name = name
        self.log = get_logger(sink=name)
        self.state = MirrorState(state_path(Path(options["state_dir"]), name))
        flags: tuple[str, ...] = ()
        if options.get("bwlimit_bps"):
            # In bytes: rclone reads a bare number as KiB/s.
            flags = (f"--bwlimit={int(options['bwlimit_bps'])}B",)
        pid_file = self.state.path.with_suffix(".rcd.pid")
        self.rcd = RcloneDaemon(Path(options["rclone_config"]), flags, name, pid_file)
        self.copier = Copier(self.rcd, str(options["remote"]))
        self.retry_start_s = float(options.get("retry_start_s", RETRY_START_S))
        self.retry_max_s = float(options.get("retry_max_s", RETRY_MAX_S))
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # something was queued
        self._kick = threading.Event()  # end a wait after a failure (retry_now, close)
        self._thread = threading.Thread(target=self._loop, name=f"mirror-{name}", daemon=True)
        if options.get("copier", True):  # False: only queue (`forge-syncd --backfill`)
            self._thread.start()

    # -- the Sink interface -----------------------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        """Queue what `event` asks the mirror to hold (nothing for other events)."""
        kind = event.get("type")
        if kind not in ("file_synced", "file_versioned"):
            return
        container, sha256 = str(event["container"]), event.get("sha256")
        local = exact_local_path(event)
        if not isinstance(sha256, str):
            sha256 = file_sha256(local)
            if sha256 is None:
                return  # not in the library any more: nothing to copy
        field = "path" if kind == "file_synced" else "version_path"
        target = mirror_name(container, str(event[field]))
        if target is None:
            self.log.warning("mirror_name_refused", path=str(event.get("path"))[:300])
            return
        with self.state.transaction() as db:
            if "id" in event and not self.state.mark_applied(db, int(event["id"]), event["ts"]):
                return  # read before (the dispatcher delivers at least once)
            if kind == "file_versioned":
                old = mirror_name(container, str(event["path"]))
                if old is not None and self.state.repoint(db, old, sha256, target, local):
                    self._wake.set()
                    return
            if self.state.queue(db, target, local, sha256, int(event.get("size") or 0)):
                self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._kick.set()
        self.rcd.close()  # ends a copy in progress: it stays queued
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        self.state.close()

    # -- status -------------------------------------------------------------------------------
    def pending(self) -> int:
        """Return how many files wait for the mirror."""
        return self.state.backlog(time.time()).files

    def status(self) -> dict[str, Any]:
        """The mirror's backlog as `status` answers it (README "Mirror")."""
        backlog = self.state.backlog(time.time())
        return {
            "pending_files": backlog.files,
            "pending_bytes": backlog.bytes,
            "oldest_pending_s": None if backlog.oldest_s is None else round(backlog.oldest_s, 1),
            "mirrored_files": self.state.mirrored_count(),
            "failures": self.failures,
            "last_error": self.last_error or backlog.last_error,
            "check": self.copier.check,
        }

    def settle(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the queue to empty, or the copies to fail (for
        `--once`); return whether nothing is left to copy."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and not self.failures and time.monotonic() < deadline:
            self._stop.wait(0.1)
        return not self.pending()

    def retry_now(self) -> None:
        """Try the queue at once, whatever the wait after a failure."""
        self._kick.set()
        self._wake.set()

    # -- the copier ----------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._copy_while_running()
        except sqlite3.ProgrammingError:
            if not self._stop.is_set():
                raise  # closed under a copy that outlived close()'s wait: nothing to record

    def _copy_while_running(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            copies = self.state.next_copies(BATCH)
            if not copies:
                self._wake.wait(IDLE_S)
                continue
            for copy in copies:
                if self._stop.is_set() or not self._copy(copy):
                    break
            if self.failures and not self._stop.is_set():
                # New files wait too: what failed (a remote down or full) fails them too.
                wait = min(self.retry_max_s, self.retry_start_s * 2 ** (self.failures - 1))
                self._kick.wait(wait)
                self._kick.clear()

    def _copy(self, copy: Copy) -> bool:
        """Make one copy; record what came of it. Return False when it failed."""
        try:
            checked = self.copier.copy(copy)
        except Stale as exc:
            self.state.drop(copy)
            self.log.info("mirror_copy_dropped", name=copy.name, reason=str(exc))
            return True
        except FileNotFoundError:
            if copy.attempts + 1 >= MISSING_ATTEMPTS:
                self.state.drop(copy)
                self.log.warning("mirror_copy_dropped", name=copy.name, reason="library file gone")
                return True
            return self._failed(copy, "the library file is missing")
        except (OSError, MirrorError, RcloneError) as exc:
            if self._stop.is_set():
                return False  # closing: the copy stays queued, not a failure
            return self._failed(copy, f"{type(exc).__name__}: {exc}")
        self.state.done(copy, checked)
        if self.failures:
            self.log.info("mirror_recovered", after_failures=self.failures)
        self.failures, self.last_error = 0, None
        self.log.info("mirror_copied", name=copy.name, bytes=copy.size, checked=checked)
        return True

    def _failed(self, copy: Copy, error: str) -> bool:
        self.failures += 1
        self.last_error = error[:500]
        self.state.failed(copy, self.last_error)
        self.log.warning(
            "mirror_copy_failed", name=copy.name, error=self.last_error, attempt=self.failures
        )
        return False
