"""The WAN emulator's shared link and per-connection cap (tests/support/wan.py), checked on
the pacing it computes (scheduled crossing times), never on the wall clock."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from tests.support.wan import SEGMENT, Flow, FlowStats, Link, Signal, WanLink

MB = 1_000_000
LINK = 25e6  # 200 Mbit/s
CAP = 6.25e6  # 50 Mbit/s


def run(link: Link, flows: list[Flow], nbytes: int, now: float = 0.0) -> list[float]:
    """Offer `nbytes` in segments on each flow, all read at `now` (one flow's data after the
    other's, as a proxy reading greedily would), then advance the link as a punctual timer
    would until nothing waits; return each flow's last crossing time."""
    for flow in flows:
        for _ in range(nbytes // SEGMENT):
            link.offer(flow, now, bytes(SEGMENT))
    clock: float | None = now
    while clock is not None:
        clock = link.advance(clock)
    return [flow.stats.last_crossed for flow in flows]


def test_two_capped_connections_each_get_the_cap_and_together_twice_it() -> None:
    """Two connections capped at 50 Mbit/s on a 200 Mbit/s link, each with 10 MB read at
    once: each crosses at its cap and both finish together (the second takes the time the
    first leaves), so together they move twice the cap, under the link rate."""
    link = Link(LINK)
    flows = [Flow(CAP, 0.0), Flow(CAP, 0.0)]
    nbytes = (10 * MB // SEGMENT) * SEGMENT
    ends = run(link, flows, nbytes)
    for flow, end in zip(flows, ends, strict=True):
        assert flow.stats.nbytes == nbytes
        assert flow.stats.rate() == pytest.approx(CAP, rel=0.01)
        assert end == pytest.approx(nbytes / CAP, rel=0.01)
    together = 2 * nbytes / max(ends)
    assert together == pytest.approx(2 * CAP, rel=0.01) and together < LINK


def test_capped_connections_beyond_the_link_share_the_link_rate_evenly() -> None:
    """Five connections capped at 50 Mbit/s (250 Mbit/s in all) on a 200 Mbit/s link move
    together at the link rate, not more, each at a fifth of it."""
    link = Link(LINK)
    flows = [Flow(CAP, 0.0) for _ in range(5)]
    nbytes = (4 * MB // SEGMENT) * SEGMENT
    ends = run(link, flows, nbytes)
    assert 5 * nbytes / max(ends) == pytest.approx(LINK, rel=0.01)
    for flow in flows:
        assert flow.stats.rate() == pytest.approx(LINK / 5, rel=0.02)


def test_without_a_cap_one_connection_gets_the_link_and_two_take_turns() -> None:
    """With no cap a connection crosses at the link rate, as before the cap existed, and two
    connections with data waiting at once take turns: each at half the link rate, also when
    the second one's data comes after the first one's whole backlog was read."""
    link = Link(LINK)
    alone = Flow(None, 0.0)
    nbytes = (5 * MB // SEGMENT) * SEGMENT
    (end,) = run(link, [alone], nbytes)
    assert end == pytest.approx(nbytes / LINK)
    later = end + 1.0
    pair = [Flow(None, later), Flow(None, later)]
    ends = run(link, pair, nbytes, now=later)
    assert 2 * nbytes / (max(ends) - later) == pytest.approx(LINK)
    for flow in pair:
        assert flow.stats.rate() == pytest.approx(LINK / 2, rel=0.01)
    first, second = Flow(None, 10.0), Flow(None, 10.0)
    for _ in range(nbytes // SEGMENT):
        link.offer(first, 10.0, bytes(SEGMENT))
    clock: float | None = 10.0
    while clock is not None and clock < 10.05:
        clock = link.advance(clock)
    for _ in range(nbytes // SEGMENT):
        link.offer(second, 10.05, bytes(SEGMENT))
    clock = 10.05
    while clock is not None:
        clock = link.advance(clock)
    # 50 ms alone, then turns until the first is done, then the second alone.
    shared_until = 10.05 + 2 * (nbytes - 0.05 * LINK) / LINK
    assert first.stats.last_crossed == pytest.approx(shared_until, abs=0.01)
    assert second.stats.last_crossed == pytest.approx(10 + 2 * nbytes / LINK, abs=0.001)


def test_the_link_serves_in_order_of_eligibility_and_a_flow_in_order() -> None:
    """The link serves the item that became eligible first (a connection's items are spaced
    at its cap, or at the link rate), a connection's items cross in the order they were read,
    signals after its bytes, and nothing crosses before the connection's start."""
    link = Link(1000.0, horizon=0.0)
    crossed: list[tuple[str, float, int | str]] = []

    def note(name: str) -> Callable[[float, bytes | Signal], None]:
        return lambda when, item: crossed.append(
            (name, when, len(item) if isinstance(item, bytes) else item.value)
        )

    capped = Flow(100.0, 0.0, note("capped"))
    free = Flow(None, 0.05, note("free"))
    link.offer(capped, 0.0, bytes(100))  # eligible at 0
    link.offer(capped, 0.0, bytes(100))  # eligible at 1.0 (its cap)
    link.offer(free, 0.0, bytes(1000))  # eligible at 0.05 (its start)
    link.offer(free, 0.0, bytes(10))
    link.offer(free, 0.0, Signal.EOF)
    clock: float | None = 0.0
    while clock is not None:
        clock = link.advance(clock)
    assert [(name, round(when, 6), what) for name, when, what in crossed] == [
        ("capped", 0.1, 100),
        ("free", 1.1, 1000),  # eligible at 0.05: waits for the link
        ("capped", 1.2, 100),  # eligible at 1.0, before "free"'s next (1.05: its link pace)
        ("free", 1.21, 10),
        ("free", 1.21, "eof"),
    ]


def through_link(cap: float | None, nbytes: int) -> list[FlowStats]:
    """Write `nbytes` (whole MB) on each of two TCP connections, 1 MB on each in turn,
    through a 200 Mbit/s `WanLink` (capped at `cap` each when set) to a reader each; check
    every byte arrived; return the link's pacing record of each connection's client-to-server
    direction."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    received: list[int] = []

    def drain(conn: socket.socket) -> None:
        total = 0
        with conn:
            while data := conn.recv(1 << 20):
                total += len(data)
        received.append(total)

    def serve() -> None:
        with listener:
            conns = [listener.accept()[0] for _ in range(2)]
        readers = [threading.Thread(target=drain, args=(conn,)) for conn in conns]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout=30)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    with WanLink(int(listener.getsockname()[1]), 0.01, LINK, flow_cap_bps=cap) as link:
        clients = [socket.create_connection(("127.0.0.1", link.port)) for _ in range(2)]
        chunk = b"x" * MB
        for _ in range(nbytes // MB):  # both connections' bytes come in turns
            for client in clients:
                client.sendall(chunk)
        for client in clients:
            client.shutdown(socket.SHUT_WR)
        server.join(timeout=30)
        for client in clients:
            client.close()
        stats = [record.up for record in link.stats]
    assert received == [nbytes, nbytes]
    assert [record.nbytes for record in stats] == [nbytes, nbytes]
    return stats


def together(stats: list[FlowStats]) -> float:
    """Return the bytes per second all connections moved, first start to last crossing."""
    first = min(record.first_start or 0.0 for record in stats)
    return sum(record.nbytes for record in stats) / (
        max(record.last_crossed for record in stats) - first
    )


def test_two_real_connections_through_a_capped_link_are_paced_at_the_cap() -> None:
    """Two TCP connections through a link with a 50 Mbit/s cap on 200 Mbit/s, each writing
    4 MB at once: the bytes arrive whole, and the link's own record shows each connection
    paced at the cap and both together at about twice it."""
    stats = through_link(CAP, 4 * MB)
    for record in stats:
        assert record.rate() == pytest.approx(CAP, rel=0.05)
    assert CAP * 1.5 < together(stats) <= 2 * CAP * 1.05


def test_two_real_connections_without_a_cap_share_the_link() -> None:
    """Two uncapped TCP connections through one link share its rate (before the shared link,
    each connection had a link of its own and two moved twice the rate)."""
    stats = through_link(None, 8 * MB)
    assert together(stats) <= LINK * 1.02
    assert all(record.rate() < LINK * 0.8 for record in stats)


def test_a_bad_cap_is_refused() -> None:
    """A cap of zero or below is a ValueError naming it."""
    with pytest.raises(ValueError, match="flow cap 0"):
        WanLink(1, flow_cap_bps=0)
