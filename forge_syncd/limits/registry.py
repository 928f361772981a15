"""Every container's `Limiter` and the global cap, in one process-wide `Limits`.

A container's limiter outlives its runner and its transport: a reload that changes the
container, or only its `bwlimit`, updates the limiter its running transfer reads through,
and a timetable's boundary applies to the next chunk read. A transport that can time a round
trip (SSH: `transports/ssh/ping.py`) gives it as an `RttSource`: while the container
transfers, a thread samples it, for `forge_sync_link_rtt_seconds` and for `auto`."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from forge_syncd.config.bwlimit import BwLimit, fixed
from forge_syncd.config.model import ContainerConfig
from forge_syncd.limits.auto import AutoRate
from forge_syncd.limits.bucket import BURST_S, TokenBucket
from forge_syncd.limits.shares import fair_shares
from forge_syncd.transports.receive import RateLimiter

# Given nothing, time one round trip on the container's connection; None when it could not.
RttSource = Callable[[], float | None]

ACTIVE_S = 1.0  # a container that read within this long shares the global cap
RATE_WINDOW_S = 2.0  # the measured rate: bytes over this long
SAMPLE_EVERY_S = 0.05  # auto: a round trip this often (one at a time)
SAMPLE_IDLE_S = 1.0  # otherwise, for the metric
SAMPLER_IDLE_S = 2.0  # the sampler ends after this long without a read
# Under a limit, a read takes about READ_S worth of the rate (at least MIN_READ): the
# sender is let go in steps that queue on the link for a few milliseconds at most.
READ_S = 0.005
USED, USED_WINDOW_S = 0.8, 0.5  # auto grows a rate only while it is used
AUTO_BURST_S = 0.02
# auto: the bytes a stream may have unread (its SSH window, given back as it reads) are
# the rate times the base round trip plus the target delay, shared by the streams that
# read within READER_ACTIVE_S; never under MIN_FLIGHT (a few SSH packets: less stalls).
READER_ACTIVE_S = 0.5
MIN_FLIGHT = 128 * 1024
MIN_READ = 16 * 1024


class Limiter(RateLimiter):
    """One container's limit: its own `bwlimit` (rate, timetable or auto) and its share of
    the global cap, whichever is less. Thread-safe."""

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(None)
        self.name = name
        self.limits = limits
        self.bwlimit: BwLimit | None = None
        self.auto: AutoRate | None = None
        self.source: RttSource | None = None
        self.rtt_s: float | None = None
        self.last_read = float("-inf")
        # (when, bytes) of the reads of the last RATE_WINDOW_S, and their sum
        self._window: deque[tuple[float, int]] = deque()
        self._window_bytes = 0
        self._sampler: threading.Thread | None = None
        self._lock = threading.Lock()
        self._readers: dict[int, float] = {}  # id of a stream -> when it last asked
        self.bucket = TokenBucket(self.current_rate, limits.clock, limits.sleep)

    def configure(self, bwlimit: BwLimit | None, auto_delay_s: float) -> None:
        """Apply a (re)loaded `bwlimit` and `auto_delay`, keeping what `auto` learnt."""
        self.bwlimit = bwlimit
        # auto: no burst (a burst is a queue on the link); a set rate: one second's worth.
        self.bucket.burst_s = AUTO_BURST_S if bwlimit is not None and bwlimit.auto else BURST_S
        if bwlimit is not None and bwlimit.auto:
            if self.auto is None:
                self.auto = AutoRate(auto_delay_s, self.limits.clock)
            self.auto.target_s = max(0.001, auto_delay_s)
        else:
            self.auto = None

    def own_rate(self) -> int | None:
        """This container's own limit now (None: none): `auto` limits only a transport that
        times round trips (local folders and Docker are not held back)."""
        if self.bwlimit is None:
            return None
        if self.auto is not None:
            return None if self.source is None else int(self.auto.rate)
        return self.bwlimit.rate_at(self.limits.wall())

    def current_rate(self) -> int | None:
        """The limit now: the own limit or the global share, whichever is less."""
        own = self.own_rate()
        share = self.limits.share(self.name)
        if share is None:
            return own
        return int(share) if own is None else min(own, int(share))

    def consume(self, nbytes: int) -> None:
        now = self.limits.clock()
        with self._lock:
            self.last_read = now
            self._window.append((now, nbytes))
            self._window_bytes += nbytes
            self._forget_before(now - RATE_WINDOW_S)
        if self._sampler is None or not self._sampler.is_alive():
            self._start_sampler()
        self.bucket.consume(nbytes)

    def read_size(self, wanted: int) -> int:
        rate = self.current_rate()
        if rate is None:
            return wanted
        return max(MIN_READ, min(wanted, int(rate * READ_S)))

    def flight_cap(self, reader: object) -> int | None:
        """Under `auto` (with its round trips timed): the rate times the base round trip
        plus the target delay, shared by the streams reading now (LEDBAT holds a window
        this size; a receive rate alone cannot: above the link's rate, the sender's whole
        window waits in the link's queue). Else None."""
        auto = self.auto
        if auto is None or self.source is None:
            return None
        base = auto.base_s()
        rate = self.current_rate()
        if base is None or rate is None:
            return None
        now = self.limits.clock()
        with self._lock:
            self._readers[id(reader)] = now
            for key, when in list(self._readers.items()):
                if now - when > READER_ACTIVE_S:
                    del self._readers[key]
            sharing = len(self._readers)
        return max(MIN_FLIGHT, int(rate * (base + auto.target_s) / sharing))

    def _forget_before(self, moment: float) -> None:
        while self._window and self._window[0][0] <= moment:
            self._window_bytes -= self._window.popleft()[1]

    def measured_bps(self, window_s: float = RATE_WINDOW_S) -> float:
        """Bytes per second received over the last `window_s`, at most RATE_WINDOW_S (0
        when idle)."""
        now = self.limits.clock()
        with self._lock:
            self._forget_before(now - RATE_WINDOW_S)
            if window_s >= RATE_WINDOW_S:
                return self._window_bytes / RATE_WINDOW_S
            got = 0
            for when, nbytes in reversed(self._window):
                if when <= now - window_s:
                    break
                got += nbytes
        return got / window_s

    def active(self, now: float) -> bool:
        return now - self.last_read < ACTIVE_S

    def set_rtt_source(self, source: RttSource | None) -> None:
        """A transport's way to time a round trip on the container's connection."""
        self.source = source

    def observe_rtt(self, rtt_s: float) -> None:
        """A round-trip sample: kept for the metric, and `auto` adjusts its rate."""
        self.rtt_s = rtt_s
        auto = self.auto
        if auto is not None:
            # Used: it received at least USED of the rate lately (a rate it cannot reach,
            # held back elsewhere, would only grow into a burst once it can).
            used = self.measured_bps(USED_WINDOW_S) >= USED * auto.rate
            auto.observe(rtt_s, used)

    def _start_sampler(self) -> None:
        if self.source is None or not self.limits.sample:
            return
        with self._lock:
            if self._sampler is not None and self._sampler.is_alive():
                return
            self._sampler = threading.Thread(
                target=self._sample, name=f"rtt-{self.name}", daemon=True
            )
            self._sampler.start()

    def _sample(self) -> None:
        """Time round trips while the container transfers (one at a time)."""
        while self.limits.clock() - self.last_read < SAMPLER_IDLE_S:
            source = self.source
            sample = None if source is None else source()
            if sample is not None:
                self.observe_rtt(sample)
            time.sleep(SAMPLE_EVERY_S if self.auto is not None else SAMPLE_IDLE_S)

    def status(self) -> dict[str, Any]:
        """The container's `bwlimit` in `status`: `setting` as written (None: none),
        `rate_bps` the limit now (its own or its share of the global cap, whichever is less;
        None: none), `measured_bps` what it received over the last 2 s, `rtt_s` the last
        round trip timed (None: none yet)."""
        return {
            "setting": None if self.bwlimit is None else self.bwlimit.text,
            "rate_bps": self.current_rate(),
            "measured_bps": round(self.measured_bps()),
            "rtt_s": None if self.rtt_s is None else round(self.rtt_s, 4),
        }


class Limits:
    """The process's limiters (one a container name) and the global cap."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = datetime.now,
        sleep: Callable[[float], None] = time.sleep,
        sample: bool = True,
    ) -> None:
        """`clock`, `wall` (local time, for timetables) and `sleep` are injectable;
        `sample`: start round-trip samplers (unit tests with a fake clock do not)."""
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.sample = sample
        self.cap: BwLimit | None = None
        self._limiters: dict[str, Limiter] = {}
        self._lock = threading.Lock()

    def configure(self, cap: BwLimit | int | None) -> None:
        """Apply the (re)loaded `limits: {bwlimit}` (None: no global cap)."""
        self.cap = fixed(cap) if isinstance(cap, int) else cap

    def limiter(self, name: str, bwlimit: BwLimit | int | None, auto_delay_s: float) -> Limiter:
        """Return container `name`'s limiter, made or updated with its config."""
        with self._lock:
            limiter = self._limiters.get(name)
            if limiter is None:
                limiter = self._limiters[name] = Limiter(name, self)
        limiter.configure(fixed(bwlimit) if isinstance(bwlimit, int) else bwlimit, auto_delay_s)
        return limiter

    def get(self, name: str) -> Limiter | None:
        return self._limiters.get(name)

    def cap_rate(self) -> int | None:
        """The global cap now (None: none)."""
        return None if self.cap is None else self.cap.rate_at(self.wall())

    def share(self, name: str) -> float | None:
        """Container `name`'s share of the global cap now (None: no cap): the cap split
        fairly between the containers transferring (`shares.fair_shares`)."""
        cap = self.cap_rate()
        if cap is None:
            return None
        now = self.clock()
        wants: dict[str, float | None] = {}
        for other in list(self._limiters.values()):
            if other.name == name or other.active(now):
                own = other.own_rate()
                wants[other.name] = None if own is None else float(own)
        return fair_shares(cap, wants).get(name)

    def status(self) -> dict[str, Any]:
        """The global cap in `status`: `setting` as written and `rate_bps` now (None: none)."""
        return {"setting": None if self.cap is None else self.cap.text, "rate_bps": self.cap_rate()}

    def container_status(self, name: str) -> dict[str, Any]:
        """Container `name`'s limit in `status` (`Limiter.status`; before its first
        transfer: its share of the global cap alone)."""
        limiter = self.get(name)
        if limiter is not None:
            return limiter.status()
        return {"setting": None, "rate_bps": self.share(name), "measured_bps": 0, "rtt_s": None}


LIMITS = Limits()  # the process's: the daemon configures it, transports read through it


def limiter_for(container: ContainerConfig) -> Limiter:
    """Return `container`'s limiter in the process's `LIMITS`, updated with its config."""
    return LIMITS.limiter(container.name, container.sync.bwlimit, container.sync.auto_delay_s)
