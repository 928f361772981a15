"""/metrics under idle, slow and many connections: threads and time per connection are
bounded, and a real scrape still gets through (issue 14, item 7)."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from forge_syncd.service import metrics_http
from forge_syncd.service.metrics import serve
from forge_syncd.service.metrics_http import HEAD_TIMEOUT_S, MAX_WAITING, WORKERS, BoundedWSGIServer
from tests.support.cli import write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import write_file


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 10) -> str:
    """Given a port, GET /metrics (10 s budget, as Prometheus' default scrape timeout)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
        return response.read().decode()


def closed_by_peer(sock: socket.socket) -> bool:
    """Given a client socket, return whether the server has closed it (EOF or reset)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def closed_among(socks: list[socket.socket]) -> int:
    """Given client sockets, return how many the server has closed (one select for all)."""
    readable, _, _ = select.select(socks, [], [], 0.05)
    return sum(closed_by_peer(sock) for sock in readable)


@pytest.fixture
def server() -> Iterator[BoundedWSGIServer]:
    """A /metrics server on a free port with one gauge `forge_test_value` = 3."""
    registry = CollectorRegistry()
    Gauge("forge_test_value", "A value.", registry=registry).set(3)
    started = serve(registry, "127.0.0.1", 0)
    yield started
    started.shutdown()
    started.server_close()


def test_idle_connections_pin_no_threads_and_a_scrape_gets_through(
    server: BoundedWSGIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 idle connections add no thread to the process; a scrape among them is answered
    while MAX_WAITING of them are still open (the head deadline is an hour here, so a
    server that served connections in turn would never reach the scrape); the oldest
    beyond MAX_WAITING were closed at once. With the real deadline an idle connection is
    closed by the server."""
    port = server.server_port
    assert "forge_test_value 3.0" in scrape(port)
    before = threading.active_count()
    monkeypatch.setattr(metrics_http, "HEAD_TIMEOUT_S", 3600.0)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        wait_until(
            lambda: closed_among(idle) >= 200 - MAX_WAITING,
            what="the oldest idle connections beyond MAX_WAITING to be closed",
        )
        assert threading.active_count() <= before
        assert "forge_test_value 3.0" in scrape(port, timeout=60)
        still_open = len(idle) - closed_among(idle)
        assert MAX_WAITING - 1 <= still_open <= MAX_WAITING  # the scrape took one place
    finally:
        for sock in idle:
            sock.close()
    monkeypatch.undo()
    with socket.create_connection(("127.0.0.1", port)) as quiet:
        wait_until(
            lambda: closed_by_peer(quiet),
            timeout=HEAD_TIMEOUT_S + 60,
            what="the server to close an idle connection",
        )


def test_a_request_trickled_byte_by_byte_is_cut_at_the_head_deadline(
    server: BoundedWSGIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that keeps sending one byte of its request head every 0.1 s (each read
    succeeds, so a per-read timeout would never fire) is closed by the head deadline (1 s
    here): the server cuts it while it still trickles, before it has sent 600 bytes (60 s
    of trickling), and only after it has accepted some of them."""
    monkeypatch.setattr(metrics_http, "HEAD_TIMEOUT_S", 1.0)
    sock = socket.create_connection(("127.0.0.1", server.server_port))
    sent = 0
    with sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\n")
        while not closed_by_peer(sock):
            assert sent < 600, "never cut: the head deadline did not apply"
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sent += 1
            time.sleep(0.1)
    assert sent >= 1


def test_many_concurrent_scrapes_use_a_fixed_pool_and_all_succeed(
    server: BoundedWSGIServer,
) -> None:
    """50 clients scraping at once are all answered, by at most WORKERS answering threads."""
    port = server.server_port
    results: list[bool] = []

    def one() -> None:
        results.append("forge_test_value 3.0" in scrape(port))

    clients = [threading.Thread(target=one) for _ in range(50)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=30)
    assert results == [True] * 50
    workers = {t.name for t in threading.enumerate() if t.name.startswith("metrics-http")}
    assert len(workers) <= WORKERS


def test_stopping_the_server_ends_its_threads_and_connections() -> None:
    """shutdown() and server_close() end the accept, head-reader and worker threads and close
    connections still waiting for their head."""
    before = threading.active_count()
    started = serve(CollectorRegistry(), "127.0.0.1", 0)
    scrape(started.server_port)
    waiting = socket.create_connection(("127.0.0.1", started.server_port))
    time.sleep(0.2)
    started.shutdown()
    started.server_close()
    with waiting:
        wait_until(lambda: closed_by_peer(waiting), timeout=5, what="the waiting connection")
    wait_until(lambda: threading.active_count() <= before, timeout=5, what="threads to end")


@pytest.mark.skipif(not socket.has_ipv6, reason="needs IPv6")
def test_ipv6_listen_address_serves_metrics() -> None:
    """A listen address of ::1 binds an IPv6 socket (as prometheus_client's server did)."""
    try:
        started = serve(CollectorRegistry(), "::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert "python_info" not in scrape(started.server_port, "[::1]")
    finally:
        started.shutdown()
        started.server_close()


def thread_count(pid: int) -> int:
    """Given a process id, return how many threads it has (from /proc)."""
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.slow
def test_daemon_threads_stay_bounded_under_200_idle_metrics_connections(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 14, item 7): 200 idle local connections to a running daemon's
    /metrics used to pin 200 threads. Now its thread count stays within a few of what it
    was, and a real scrape still succeeds while they are open."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a" * 1000, 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    port = free_port()
    config.write_text(
        config.read_text().replace(
            "metrics: {listen: null}", f"metrics: {{listen: 127.0.0.1:{port}}}"
        )
    )
    process = start_daemon(config)
    try:
        wait_until(
            lambda: 'forge_sync_files_transferred_total{container="forge-a"} 1.0' in _try(port),
            timeout=60,
            what="the first sync",
        )
        time.sleep(1)
        before = thread_count(process.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        try:
            time.sleep(1)
            during = thread_count(process.pid)
            assert "forge_sync_container_up" in scrape(port)
            after_scrape = thread_count(process.pid)
        finally:
            for sock in idle:
                sock.close()
        assert during <= before + WORKERS, (before, during)
        assert after_scrape <= before + WORKERS, (before, after_scrape)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def _try(port: int) -> str:
    """Given a port, return a scrape, or "" while the daemon is not answering yet."""
    try:
        return scrape(port)
    except OSError:
        return ""
