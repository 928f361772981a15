"""A userspace WAN link on 127.0.0.1 for tests and benchmarks: delay and a rate cap.

The kernel here has no `netem`, so the link is a TCP proxy (see
/work/shared/notes/wan-emulation.md). `WanLink(target_port, rtt_s, rate_bps).start()`
listens on a free port of 127.0.0.1 and forwards each connection to 127.0.0.1:target_port
only. Each direction of each connection is one queue: a chunk read at `now` starts to cross
when the link is free (`start = max(now, link_free)`, `link_free = start + len / rate`) and is
written out at `link_free + rtt / 2`. Reads are not bounded by the link, so the bytes in flight
are limited by what the endpoints allow (TCP and SSH channel windows), as on a long fat link;
only an endpoint that stops reading what was delivered to it holds its peer back. The client's
`connect()` returns at once (the proxy accepts locally), so the TCP handshake's round trip is
added on the way in: the client's bytes start crossing one RTT after the accept, and the
upstream connection opens 1.5 RTT after it, when a real server's `accept()` would return.

The link runs an asyncio loop in a daemon thread of its own; `stop()` closes the listener and
every connection and ends the thread. `SshdThroughLink` is the test sshd as a client sees it
through the link: the link's port and a known_hosts file naming the host key at that port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import socket
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.sshd import SshdServer

SEGMENT = 16 * 1024  # bytes crossing the link as one unit: finer than a read, for smooth pacing


class Signal(enum.Enum):
    """What crosses the link after the bytes: a half-close, a close, or a reset."""

    EOF = "eof"
    CLOSE = "close"
    ABORT = "abort"


class _Direction:
    """One direction of one connection: bytes read from one end, delivered to the other end
    when they have crossed the link, in order."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, rate: float, delay: float, start_at: float
    ) -> None:
        self.loop = loop
        self.rate = rate
        self.delay = delay
        self.link_free = start_at
        self.queue: deque[tuple[float, bytes | Signal]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.receiver: _End | None = None

    def carry(self, data: bytes) -> None:
        """Given bytes just read, schedule each segment's delivery after its serialization
        (at the link rate, behind what is already queued) and the one-way delay."""
        now = self.loop.time()
        view = memoryview(data)
        for offset in range(0, len(view), SEGMENT):
            piece = bytes(view[offset : offset + SEGMENT])
            start = max(now, self.link_free)
            self.link_free = start + len(piece) / self.rate
            self.queue.append((self.link_free + self.delay, piece))
        self._arm()

    def send_signal(self, signal: Signal) -> None:
        """Given a half-close, close or reset of the reading end, deliver it after the bytes
        queued before it."""
        self.queue.append((max(self.loop.time(), self.link_free) + self.delay, signal))
        self._arm()

    def attach(self, receiver: _End) -> None:
        """Given the end that receives this direction (connected now), start delivering."""
        self.receiver = receiver
        self._arm()

    def drop(self) -> None:
        """Forget what is queued (its receiver is gone)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()

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


class WanLink:
    """An emulated link in front of 127.0.0.1:`target_port`: `rtt_s` seconds of round trip
    and `rate_bps` bytes per second each way (25e6 = 200 Mbit/s). `start()` returns self
    with `port` set; `stop()` ends it; also a context manager."""

    def __init__(self, target_port: int, rtt_s: float = 0.1, rate_bps: float = 25e6) -> None:
        if rtt_s < 0 or rate_bps <= 0:
            raise ValueError(f"bad link: rtt {rtt_s} s, rate {rate_bps} B/s")
        self.target_port = target_port
        self.rtt_s = rtt_s
        self.rate_bps = rate_bps
        self.port = 0
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: set[_End] = set()
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
        up = _Direction(loop, self.rate_bps, delay, start_at=now + self.rtt_s)
        down = _Direction(loop, self.rate_bps, delay, start_at=now)
        client = _End(outgoing=up, incoming=down, live=self._live)
        server = _End(outgoing=down, incoming=up, live=self._live)
        client.peer, server.peer = server, client
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
