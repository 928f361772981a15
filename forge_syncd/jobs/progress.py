"""Live progress of a container's running job: counts, rate over a sliding window, ETA."""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

WINDOW_S = 10.0


class Progress:
    """Updated by a run's threads, read by status, watch and metrics. Thread-safe.

    Besides the running job's progress it keeps the container's cumulative totals (files
    and bytes synced and purged since the daemon started), which the metrics expose as
    counters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.synced_files = self.synced_bytes = self.purged_files = self.purged_bytes = 0
        self.job: str | None = None
        self.files_total = self.files_done = self.bytes_total = self.bytes_done = 0
        self._samples: deque[tuple[float, int]] = deque()
        self.current: str | None = None
        self.run_id: str | None = None
        self.started_at: str | None = None
        self._finished: dict[str, Any] | None = None
        self._counted: set[bytes] = set()  # files counted done, by path (file_done's key)

    def begin(
        self, job: str, files_total: int, bytes_total: int, run_id: str | None = None
    ) -> None:
        """A job's transfers (or purges, or hashing) start: `files_total` files of
        `bytes_total` bytes; `run_id`: its run's (None: not a recorded run)."""
        with self._lock:
            self.job = job
            self.files_total, self.bytes_total = files_total, bytes_total
            self.files_done = self.bytes_done = 0
            self._counted = set()
            self.current = None
            self.run_id = run_id
            self.started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
            self.started_at = self.started_at.replace("+00:00", "Z")
            self._samples = deque([(time.monotonic(), 0)])

    def add_bytes(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes
            now = time.monotonic()
            self._samples.append((now, self.bytes_done))
            while len(self._samples) > 2 and now - self._samples[0][0] > WINDOW_S:
                self._samples.popleft()

    def file_started(self, path: str) -> None:
        with self._lock:
            self.current = path

    def file_done(self, key: bytes | None = None) -> None:
        """A file of the job is done (arrived, landed, failed, purged...). With `key` (its
        path), a file told twice (arrived, then landed) counts once."""
        with self._lock:
            if key is not None:
                if key in self._counted:
                    return
                self._counted.add(key)
            self.files_done += 1

    def record_synced(self, nbytes: int) -> None:
        with self._lock:
            self.synced_files += 1
            self.synced_bytes += nbytes

    def record_purged(self, nbytes: int) -> None:
        with self._lock:
            self.purged_files += 1
            self.purged_bytes += nbytes

    def pending(self) -> tuple[int, int]:
        """Return (files, bytes) of the running job still to do; (0, 0) when none runs."""
        with self._lock:
            if self.job != "sync":
                return 0, 0
            return (
                max(0, self.files_total - self.files_done),
                max(0, self.bytes_total - self.bytes_done),
            )

    def end(self) -> None:
        """The job's work is over: its final figures stay readable (`finished`)."""
        with self._lock:
            self._finished = self._snapshot()
            self.job = None

    def finished(self) -> dict[str, Any] | None:
        """Return the final `progress` object of the job that ended last (its bar ends at
        these figures), or None before any."""
        with self._lock:
            return None if self._finished is None else dict(self._finished)

    def snapshot(self) -> dict[str, Any] | None:
        """Return SPEC's `progress` object (plus `current`, `run_id`, `started_at`), or None
        when no job runs."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any] | None:
        """`snapshot`, the lock held."""
        if self.job is None:
            return None
        rate = 0.0
        if len(self._samples) >= 2:
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        remaining = max(0, self.bytes_total - self.bytes_done)
        return {
            "job": self.job,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "rate_bps": round(rate, 1),
            "eta_s": round(remaining / rate, 1) if rate > 0 else None,
            "current": self.current,
            "run_id": self.run_id,
            "started_at": self.started_at,
        }
