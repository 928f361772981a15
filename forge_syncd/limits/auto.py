"""`bwlimit: auto`: hold the queueing delay our transfer adds under a target (LEDBAT's idea,
RFC 6817, as BitTorrent's uTP does), so a video call or a shell sharing the user's line
keeps its round trip.

The queueing delay is a round trip (a sample the transport gives: an SSH keepalive's
answer, which comes back behind our own data) over the base delay, the smallest round trip
seen in the last minutes (the path with empty queues). While the delay is under the target
the rate grows in proportion to the room left; above it, the rate is cut in proportion to the
excess, at most halved and once a round trip (the samples that follow a cut left before
it could show). The current delay is the lesser of the last two samples
(one delayed answer is noise, two are a queue). The rate never grows while the transfer does
not use it (a slow disk, a small run): it would only build a burst for later."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

START_RATE = 1024 * 1024  # bytes/s before the first samples
MIN_RATE = 64 * 1024
MAX_RATE = 4 * 1024**3
# Per sample, at zero queueing delay: +15% until the first cut (finding the link's rate
# fast, as TCP's slow start), +4% after (growing at 1.5x a second at most, so a queue
# builds slowly enough for the samples to see it before it is deep).
GAIN_START, GAIN_UP = 0.15, 0.08
GAIN_DOWN = 0.3  # per sample, per target of excess delay
BASE_BUCKET_S = 60.0  # the base delay: minima of one-minute buckets...
BASE_HISTORY = 10  # ...over the last ten minutes (RFC 6817's BASE_HISTORY)
CURRENT_FILTER = 2  # the current delay: the least of the last samples (noise)


class AutoRate:
    """The rate `auto` allows now, from round-trip samples; thread-safe."""

    def __init__(self, target_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.target_s = max(0.001, target_s)
        self.clock = clock
        self.rate = float(START_RATE)
        self.last_rtt_s: float | None = None
        self.delay_s: float | None = None  # the last queueing delay measured
        self._lock = threading.Lock()
        self._base: deque[tuple[float, float]] = deque(maxlen=BASE_HISTORY)
        self._recent: deque[float] = deque(maxlen=CURRENT_FILTER)
        self._hold_until = float("-inf")  # after a cut: the next samples still see the queue

    def base_s(self) -> float | None:
        """The base delay: the least round trip of the last BASE_HISTORY minutes."""
        return min((low for _, low in self._base), default=None)

    def observe(self, rtt_s: float, used: bool) -> float:
        """Take a round-trip sample and whether the transfer uses the whole rate (it was
        held back lately); return the new rate."""
        with self._lock:
            now = self.clock()
            bucket = now // BASE_BUCKET_S
            if self._base and self._base[-1][0] == bucket:
                self._base[-1] = (bucket, min(self._base[-1][1], rtt_s))
            else:
                self._base.append((bucket, rtt_s))
            self._recent.append(rtt_s)
            self.last_rtt_s = rtt_s
            base = self.base_s() or rtt_s
            delay = max(0.0, min(self._recent) - base)
            self.delay_s = delay
            off_target = (self.target_s - delay) / self.target_s
            if off_target >= 0:
                # Grow only a rate that is used, and not on a sample over the target
                # (the filter would hide the start of a queue for a sample).
                if used and rtt_s - base < self.target_s:
                    gain = GAIN_START if self._hold_until == float("-inf") else GAIN_UP
                    self.rate *= 1 + gain * off_target
            elif now >= self._hold_until:
                # One cut a round trip: the samples within it left before the cut showed.
                self.rate *= max(0.5, 1 + GAIN_DOWN * off_target)
                self._hold_until = now + rtt_s
            self.rate = min(MAX_RATE, max(MIN_RATE, self.rate))
            return self.rate
