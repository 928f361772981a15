"""A token bucket whose rate may change at any moment (a timetable's boundary, a reload,
the auto limit, the global cap's share), with an injectable clock for tests.

A reader takes its bytes at once and then waits until the bucket is out of debt, waking at
least every `MAX_NAP_S` to refill at the rate that holds then: a rate raised (or lifted) in
the middle of a wait applies within a quarter of a second, not after a wait computed at the
old rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

BURST_S = 1.0  # a transfer may start with one second's worth at once
MAX_NAP_S = 0.25


class TokenBucket:
    """Tokens (bytes) refill at `rate()` up to BURST_S seconds' worth; thread-safe."""

    def __init__(
        self,
        rate: Callable[[], int | None],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_s: float = BURST_S,
    ) -> None:
        """`rate()`: bytes per second now (None: no limit), asked at each refill."""
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.burst_s = burst_s
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._at = clock()
        self._full = True  # a fresh bucket holds one burst

    def _refill(self) -> int | None:
        """Add what accrued since the last refill, at the rate that holds now; return it."""
        now = self.clock()
        rate = self.rate()
        elapsed, self._at = max(0.0, now - self._at), now
        if rate is None:
            self._tokens, self._full = 0.0, True
            return None
        cap = rate * self.burst_s
        if self._full:
            self._tokens, self._full = cap, False
        self._tokens = min(cap, self._tokens + elapsed * rate)
        return rate

    def consume(self, nbytes: int, cancel: Callable[[], bool] | None = None) -> None:
        """Take `nbytes`; return once the bucket is out of debt (at once without a limit,
        or when `cancel()` says so)."""
        with self._lock:
            if self._refill() is None:
                return
            self._tokens -= nbytes
        while True:
            with self._lock:
                rate = self._refill()
                debt = -self._tokens
            if rate is None or debt < 1 or (cancel is not None and cancel()):
                return
            self.sleep(min(MAX_NAP_S, debt / rate))
