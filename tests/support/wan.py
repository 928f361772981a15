"""A userspace WAN link on 127.0.0.1 for tests and benchmarks: delay, a rate cap shared by
every connection, and optionally a rate cap per connection that stands for packet loss.

The kernel here has no `netem`, so the link is a TCP proxy (see
/work/shared/notes/wan-emulation.md). `WanLink(target_port, rtt_s, rate_bps,
flow_cap_bps=None).start()` listens on a free port of 127.0.0.1 and forwards each connection
to 127.0.0.1:target_port only. Each direction of the link is one `Link` shared by all
connections, serializing segments of 16 KiB at the rate one after another. Each direction of
each connection is one `Flow`: a segment read at `now` becomes eligible at
`eligible = max(now, flow_free)`, then `flow_free = eligible + len / min(flow_cap, rate)` (the
connection's segments are spaced at its cap, or at the link rate without one); the link
serves eligible segments in order of eligibility (a connection held back by its cap leaves the
link to the others; connections with data waiting take turns, as in virtual-clock fair
queueing, where a FIFO with unbounded reads would let the first one starve the rest), each
taking `len / rate` seconds, and each is written out `rtt / 2` after it has crossed. Reads are not bounded by the link, so the bytes in flight
are limited by what the endpoints allow (TCP and SSH channel windows), as on a long fat link;
only an endpoint that stops reading what was delivered to it holds its peer back. The client's
`connect()` returns at once (the proxy accepts locally), so the TCP handshake's round trip is
added on the way in: the client's bytes start crossing one RTT after the accept, and the
upstream connection opens 1.5 RTT after it, when a real server's `accept()` would return.

The per-connection cap stands for a lossy path. A TCP flow losing a fraction p of its packets
is held near MSS/RTT x 1.22/sqrt(p) whatever its window (Mathis et al. 1997, for Reno), so
p = (1.22 MSS / (RTT x rate))^2: with MSS 1460 B at 100 ms, a cap of 50 Mbit/s stands for
p = 8e-6 (one packet in 120,000), 14 Mbit/s for 1e-4, 4.5 Mbit/s for 1e-3 and 1.4 Mbit/s for
1%. Linux's default CUBIC keeps a larger window at the same loss on long paths (RFC 8312 5.1:
about 1.054 (RTT/p)^0.75 packets, RTT in seconds), so with CUBIC 50 Mbit/s at 100 ms stands
for p = 3e-5. The cap is a steady rate, without the saw-tooth of a real flow: figures through
it are what several connections gain on such a path, not how one flow recovers from a loss.
`stats` holds, per connection and direction, the bytes it carried and the times the pacing
computed (first start, last crossing), for tests that check the pacing without a clock;
`abort(index)` resets one connection at both ends (a path that breaks mid-stream).

The link runs an asyncio loop in a daemon thread of its own; `stop()` closes the listener and
every connection and ends the thread. `SshdThroughLink` is the test sshd as a client sees it
through the link: the link's port and a known_hosts file naming the host key at that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import heapq
import itertools
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.sshd import SshdServer

SEGMENT = 16 * 1024  # bytes crossing the link as one unit: finer than a read, for smooth pacing
HORIZON = 0.005  # seconds: how far ahead the link gives slots (its fairness grain)


class Signal(enum.Enum):
    """What crosses the link after the bytes: a half-close, a close, or a reset."""

    EOF = "eof"
    CLOSE = "close"
    ABORT = "abort"


@dataclass
class FlowStats:
    """What one direction of one connection carried, as the link's pacing scheduled it."""

    nbytes: int = 0
    first_start: float | None = None  # when its first segment started to cross
    last_crossed: float = 0.0  # when its last segment had crossed (before the one-way delay)

    def rate(self) -> float:
        """Return the scheduled rate in bytes per second (0 before any byte crossed)."""
        if self.first_start is None or self.last_crossed <= self.first_start:
            return 0.0
        return self.nbytes / (self.last_crossed - self.first_start)


Crossed = Callable[[float, "bytes | Signal"], None]


class Flow:
    """One direction of one connection as the link sees it: what waits to cross, each item
    with the earliest time it may start (no sooner than `start_at`, and no faster than `cap`
    bytes per second when set, else than the link's rate); `crossed(time, item)` is told when
    each item has crossed."""

    def __init__(self, cap: float | None, start_at: float, crossed: Crossed | None = None) -> None:
        self.cap = cap
        self.flow_free = start_at
        self.pending: deque[tuple[float, bytes | Signal]] = deque()
        self.queued = False  # whether the link's heap holds this flow
        self.crossed = crossed
        self.stats = FlowStats()

    def add(self, now: float, item: bytes | Signal, link_rate: float) -> None:
        """Given an item read at `now`, queue it with its earliest start: the connection's
        items are spaced at its cap, or at the link's rate when it has none (so connections
        with data waiting share the link evenly, as virtual-clock fair queueing does)."""
        eligible = max(now, self.flow_free)
        if isinstance(item, bytes):
            pace = link_rate if self.cap is None else min(self.cap, link_rate)
            self.flow_free = eligible + len(item) / pace
        self.pending.append((eligible, item))

    def record(self, start: float, end: float, item: bytes | Signal) -> None:
        """Given the slot an item got (start and end of its crossing), note it and pass on."""
        if isinstance(item, bytes):
            if self.stats.first_start is None:
                self.stats.first_start = start
            self.stats.nbytes += len(item)
            self.stats.last_crossed = end
        if self.crossed is not None:
            self.crossed(end, item)


class Link:
    """One direction of the link, shared by every connection: it serializes one item at a
    time at `rate` bytes per second, always the waiting item that became eligible first (a
    connection held back by its cap leaves the link to the others; connections with data
    waiting take turns, since each one's items are spaced at least at the link's rate).
    `advance(now)` gives slots up to `horizon` seconds ahead of now (slots in the past too,
    so a late timer costs no capacity) and returns when to be called again."""

    def __init__(self, rate: float, horizon: float = HORIZON, fifo: bool = False) -> None:
        """`fifo`: one queue for every connection (a home router's bufferbloat: a bulk flow's
        backlog delays every other flow's bytes), instead of taking turns."""
        self.rate = rate
        self.horizon = horizon
        self.fifo = fifo
        self.tail = 0.0  # fifo: when every byte queued so far will have crossed
        self.free_at = 0.0
        self.heads: list[tuple[float, int, Flow]] = []  # (eligible, arrival order, flow)
        self.order = itertools.count()

    def offer(self, flow: Flow, now: float, item: bytes | Signal) -> None:
        """Given an item of `flow` read at `now`, queue it on the link."""
        if self.fifo:
            flow.flow_free = max(flow.flow_free, self.tail)  # behind every byte queued before
        flow.add(now, item, self.rate)
        if self.fifo:
            self.tail = max(self.tail, flow.flow_free)
        if not flow.queued:
            heapq.heappush(self.heads, (flow.pending[0][0], next(self.order), flow))
            flow.queued = True

    def advance(self, now: float) -> float | None:
        """Give a slot to each waiting item, in order of eligibility, that can start by
        `now + horizon`; return when to call again (None when nothing waits)."""
        limit = now + self.horizon
        while self.heads:
            key, _, flow = self.heads[0]
            if not flow.pending:  # dropped meanwhile
                heapq.heappop(self.heads)
                flow.queued = False
                continue
            eligible, item = flow.pending[0]
            if eligible > key:  # queued again after a drop: take its real place
                heapq.heapreplace(self.heads, (eligible, next(self.order), flow))
                continue
            start = max(self.free_at, eligible)
            if start > limit:
                return start - self.horizon
            flow.pending.popleft()
            if isinstance(item, bytes):
                self.free_at = start + len(item) / self.rate
            if flow.pending:
                heapq.heapreplace(self.heads, (flow.pending[0][0], next(self.order), flow))
            else:
                heapq.heappop(self.heads)
                flow.queued = False
            flow.record(start, max(start, self.free_at), item)
        return None


class _LinkTimer:
    """Runs a `Link` on an event loop: advances it when items arrive and when it asks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, link: Link) -> None:
        self.loop = loop
        self.link = link
        self.timer: asyncio.TimerHandle | None = None
        self.due = 0.0

    def kick(self) -> None:
        wake = self.link.advance(self.loop.time())
        if wake is None or (self.timer is not None and self.due <= wake):
            return
        if self.timer is not None:
            self.timer.cancel()
        self.due = wake
        self.timer = self.loop.call_at(wake, self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.kick()


class _Direction:
    """One direction of one connection: bytes read from one end cross the shared link (its
    `Flow`) and are delivered to the other end one-way delay later, in order."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        driver: _LinkTimer,
        cap: float | None,
        start_at: float,
        delay: float,
    ) -> None:
        self.loop = loop
        self.driver = driver
        self.flow = Flow(cap, start_at, self._crossed)
        self.delay = delay
        self.queue: deque[tuple[float, bytes | Signal]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.receiver: _End | None = None

    def carry(self, data: bytes) -> None:
        """Given bytes just read, queue them on the link in segments."""
        now = self.loop.time()
        view = memoryview(data)
        for offset in range(0, len(view), SEGMENT):
            self.driver.link.offer(self.flow, now, bytes(view[offset : offset + SEGMENT]))
        self.driver.kick()

    def send_signal(self, signal: Signal) -> None:
        """Given a half-close, close or reset of the reading end, deliver it after the bytes
        queued before it."""
        self.driver.link.offer(self.flow, self.loop.time(), signal)
        self.driver.kick()

    def _crossed(self, when: float, item: bytes | Signal) -> None:
        self.queue.append((when + self.delay, item))
        self._arm()

    def attach(self, receiver: _End) -> None:
        """Given the end that receives this direction (connected now), start delivering."""
        self.receiver = receiver
        self._arm()

    def drop(self) -> None:
        """Forget what is queued or waiting to cross (its receiver is gone)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.flow.pending.clear()

    def _arm(self) -> None:
        if self.timer is None and self.queue and self.receiver is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self._deliver)

    def _deliver(self) -> None:
        self.timer = None
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and self.receiver is not None:
            self.receiver.receive(self.queue.popleft()[1])
        self._arm()


class _End(asyncio.Protocol):
    """One socket of a proxied connection (the client's or the upstream one): what it reads
    goes into `outgoing`; `incoming` delivers to it."""

    def __init__(self, outgoing: _Direction, incoming: _Direction, live: set[_End]) -> None:
        self.outgoing = outgoing
        self.incoming = incoming
        self.live = live
        self.peer: _End | None = None
        self.transport: asyncio.Transport | None = None
        self.got_eof = False
        self.sent_eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.live.add(self)
        self.incoming.attach(self)

    def data_received(self, data: bytes) -> None:
        self.outgoing.carry(data)

    def eof_received(self) -> bool:
        self.got_eof = True
        self.outgoing.send_signal(Signal.EOF)
        self._close_when_both_shut()
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.live.discard(self)
        self.incoming.drop()
        self.outgoing.send_signal(Signal.ABORT if exc is not None else Signal.CLOSE)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def pause_writing(self) -> None:
        # This end's reader is not keeping up: hold its peer back, as its TCP window would.
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def receive(self, item: bytes | Signal) -> None:
        """Given what crossed the link towards this end, write it or pass the signal on."""
        if self.transport is None or self.transport.is_closing():
            return
        if isinstance(item, bytes):
            self.transport.write(item)
        elif item is Signal.EOF:
            self.sent_eof = True
            try:
                self.transport.write_eof()
            except OSError:  # this end was reset meanwhile
                self.transport.abort()
                return
            self._close_when_both_shut()
        elif item is Signal.CLOSE:
            self.transport.close()
        else:
            self.transport.abort()

    def _close_when_both_shut(self) -> None:
        if self.got_eof and self.sent_eof and self.transport is not None:
            self.transport.close()


@dataclass
class ConnectionStats:
    """The pacing record of one connection through the link, each way."""

    up: FlowStats  # client to server
    down: FlowStats  # server to client


class WanLink:
    """An emulated link in front of 127.0.0.1:`target_port`: `rtt_s` seconds of round trip
    and `rate_bps` bytes per second each way (25e6 = 200 Mbit/s), shared by all connections;
    each connection also capped at `flow_cap_bps` each way when set (a lossy path: see the
    module's doc). `start()` returns self with `port` set; `stop()` ends it; also a context
    manager. `stats` has one `ConnectionStats` per connection, in accept order."""

    def __init__(
        self,
        target_port: int,
        rtt_s: float = 0.1,
        rate_bps: float = 25e6,
        flow_cap_bps: float | None = None,
        fifo: bool = False,
    ) -> None:
        """`fifo`: the link is one FIFO queue for all connections (see `Link`)."""
        if rtt_s < 0 or rate_bps <= 0 or (flow_cap_bps is not None and flow_cap_bps <= 0):
            raise ValueError(
                f"bad link: rtt {rtt_s} s, rate {rate_bps} B/s, flow cap {flow_cap_bps} B/s"
            )
        self.target_port = target_port
        self.rtt_s = rtt_s
        self.rate_bps = rate_bps
        self.flow_cap_bps = flow_cap_bps
        self.fifo = fifo
        self.port = 0
        self.connections = 0
        self.stats: list[ConnectionStats] = []
        self._links: tuple[_LinkTimer, _LinkTimer] | None = None  # up, down: made in the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: set[_End] = set()
        self._ends: list[tuple[_End, _End]] = []  # (client, upstream) per connection
        self._error: BaseException | None = None

    def start(self) -> WanLink:
        """Start the link's thread and listener on 127.0.0.1; return self once it listens.
        Raise RuntimeError if it could not listen."""
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"wan-link-{self.target_port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            raise RuntimeError(f"WAN link did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, end the thread; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed already
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._thread = None

    def abort(self, index: int) -> None:
        """Reset connection number `index` (accept order, from 0) at both ends, as a path
        that breaks mid-stream does: both sockets are aborted (RST), nothing queued on the
        link is delivered. Returns once done."""
        loop = self._loop
        assert loop is not None
        done = threading.Event()

        def reset() -> None:
            for end in self._ends[index]:
                end.incoming.drop()
                if end.transport is not None:
                    end.transport.abort()
            done.set()

        loop.call_soon_threadsafe(reset)
        done.wait(10)

    def __enter__(self) -> WanLink:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # this thread's own loop
        self._loop = loop
        try:
            server = loop.run_until_complete(loop.create_server(self._accept, "127.0.0.1", 0))
            self.port = int(server.sockets[0].getsockname()[1])
        except OSError as exc:
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for end in list(self._live):
                if end.transport is not None:
                    end.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def _accept(self) -> _End:
        """Return the protocol of a new client connection; its upstream opens later."""
        assert self._loop is not None
        loop, delay = self._loop, self.rtt_s / 2
        now = loop.time()
        self.connections += 1
        if self._links is None:
            self._links = (
                _LinkTimer(loop, Link(self.rate_bps, fifo=self.fifo)),
                _LinkTimer(loop, Link(self.rate_bps, fifo=self.fifo)),
            )
        cap = self.flow_cap_bps
        up = _Direction(loop, self._links[0], cap, start_at=now + self.rtt_s, delay=delay)
        down = _Direction(loop, self._links[1], cap, start_at=now, delay=delay)
        self.stats.append(ConnectionStats(up.flow.stats, down.flow.stats))
        client = _End(outgoing=up, incoming=down, live=self._live)
        server = _End(outgoing=down, incoming=up, live=self._live)
        client.peer, server.peer = server, client
        self._ends.append((client, server))
        loop.call_later(1.5 * self.rtt_s, self._open_upstream, client, server)
        return client

    def _open_upstream(self, client: _End, server: _End) -> None:
        assert self._loop is not None
        if client.lost:
            return
        self._loop.create_task(self._connect(client, server))

    async def _connect(self, client: _End, server: _End) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_connection(lambda: server, "127.0.0.1", self.target_port)
        except OSError:
            if client.transport is not None:
                client.transport.abort()


@dataclass
class SshdThroughLink(SshdServer):
    """The test sshd as a client reaches it through a `WanLink`: `port` is the link's and
    `known_hosts` a file of its own with the host key at that port. A view: it neither
    starts nor stops the server."""

    link_known_hosts: Path = Path("known_hosts")

    @property
    def known_hosts(self) -> Path:
        return self.link_known_hosts

    def start(self) -> SshdServer:
        raise RuntimeError("a view through a link: start the SshdServer itself")


def through(sshd: SshdServer, link: WanLink, known_hosts: Path) -> SshdThroughLink:
    """Given a running sshd, a started link in front of it and a path, write there a
    known_hosts naming the sshd's host key at `[127.0.0.1]:<link port>`; return the sshd
    as seen through the link (for `make_container`, `bench.compare.Bench`)."""
    fields = {
        field.name: getattr(sshd, field.name)
        for field in dataclasses.fields(sshd)
        if field.init and field.name not in ("port", "process", "link_known_hosts")
    }
    view = SshdThroughLink(**fields, port=link.port, process=None, link_known_hosts=known_hosts)
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    known_hosts.write_text(view.host_key_line())
    return view
