"""Syncs through an emulated WAN link (tests/support/wan.py) and the emulator itself.

Not timed: these pin that a run over a slow, long link completes byte-identical on every
transfer path, and that the link carries bytes unchanged, in order, with half-closes.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forge_syncd.transports.ssh.shells import close_quietly
from forge_syncd.transports.ssh.transport import SshTransport
from forge_syncd.transports.ssh.window import window_for
from tests.conftest import make_container
from tests.support.hostile import disabled
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer
from tests.support.trees import expected_forge_files, forge_tree, tree_files
from tests.support.wan import WanLink, through

# Which remote tools each path hides, and the listing and transfer it must then use.
PATHS = {
    "find+tar": ((), "find", "tar"),
    "sftp transfer": (("tar",), "find", "sftp"),
    "sftp walk": (("find", "tar", "sha256sum"), "sftp", "sftp"),
}


@pytest.fixture
def server(
    request: pytest.FixtureRequest, sshd: SshdServer, tmp_path: Path
) -> Iterator[SshdServer]:
    """The session sshd when no tool is hidden, else a dedicated sshd whose remote PATH
    lacks the tools of the path under test."""
    hidden = PATHS[request.param][0]
    if not hidden:
        yield sshd
        return
    own = SshdServer(tmp_path / "sshd", path_dirs=[disabled(tmp_path / "bin", *hidden)]).start()
    try:
        yield own
    finally:
        own.stop()


@pytest.mark.parametrize("server", list(PATHS), indirect=True)
def test_a_sync_through_a_50ms_link_is_byte_identical_on_every_path(
    server: SshdServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A Forge tree (real fixtures, generated PNGs, hostile names) synced through a link of
    50 ms RTT and 25 MB/s arrives byte-identical with its mtimes, on the tar path, the SFTP
    transfer fallback and the SFTP walk (no find, tar or sha256sum on the remote)."""
    _hidden, listing, transfer = PATHS[request.node.callspec.params["server"]]
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    for folder in (remote, media, state):
        folder.mkdir()
    forge_tree(remote)
    with WanLink(server.port, rtt_s=0.05, rate_bps=25e6) as link:
        view = through(server, link, tmp_path / "link_known_hosts")
        outcome = run_sync(make_container(view, remote, kind="forge"), media, state)
        assert link.connections >= 1
    assert outcome.result == "success", outcome.error
    assert (outcome.sync.listing, outcome.sync.transfer) == (listing, transfer)
    assert tree_files(media / "forge-a") == expected_forge_files(remote)


def serve_one(handler: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    """Listen on 127.0.0.1 for one connection, run `handler(conn)` on it in a thread;
    return (port, thread)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = int(listener.getsockname()[1])

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def read_all(conn: socket.socket) -> bytes:
    """Return everything `conn` receives until the peer's EOF."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_the_link_carries_bytes_unchanged_in_order_both_ways() -> None:
    """Random bytes sent both ways at once (each side writing in odd-sized pieces, then
    half-closing) arrive unchanged and in order, each side sees the other's EOF after all
    the bytes, and the round trip is never shorter than the link's RTT."""
    rng = random.Random(16)
    up = rng.randbytes(3 * 1024 * 1024 + 17)
    down = rng.randbytes(2 * 1024 * 1024 + 5)
    got: dict[str, bytes] = {}

    def peer(conn: socket.socket) -> None:
        for _ping in range(2):
            assert conn.recv(1) == b"?"
            conn.sendall(b"!")
        writer = threading.Thread(target=send_in_pieces, args=(conn, down, 1))
        writer.start()
        got["up"] = read_all(conn)
        writer.join()

    port, thread = serve_one(peer)
    with (
        WanLink(port, rtt_s=0.02, rate_bps=50e6) as link,
        socket.create_connection(("127.0.0.1", link.port), timeout=20) as client,
    ):
        client.sendall(b"?")
        assert client.recv(1) == b"!"  # the upstream is open: time one round trip now
        started = time.monotonic()
        client.sendall(b"?")
        assert client.recv(1) == b"!"
        round_trip = time.monotonic() - started
        writer = threading.Thread(target=send_in_pieces, args=(client, up, 2))
        writer.start()
        got["down"] = read_all(client)
        writer.join()
        thread.join(timeout=20)
    assert round_trip >= 0.02
    assert got["up"] == up
    assert got["down"] == down


def send_in_pieces(conn: socket.socket, data: bytes, seed: int) -> None:
    """Send `data` in pieces of random sizes (1 byte to 100 KB), then half-close."""
    rng = random.Random(seed)
    offset = 0
    while offset < len(data):
        size = rng.randint(1, 100_000)
        conn.sendall(data[offset : offset + size])
        offset += size
    conn.shutdown(socket.SHUT_WR)


def test_the_link_passes_a_refused_upstream_on_as_a_closed_connection() -> None:
    """When nothing listens at the target, the client's connection is closed (no hang) and
    the link stops cleanly afterwards."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = int(probe.getsockname()[1])
    with (
        WanLink(dead_port, rtt_s=0.01, rate_bps=1e6) as link,
        socket.create_connection(("127.0.0.1", link.port), timeout=10) as client,
    ):
        try:
            data = client.recv(1)
        except ConnectionResetError:
            data = b""
    assert data == b""


def test_the_tar_shell_started_on_connect_gets_the_window_the_round_trip_asks_for(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A new connection starts the tar stream's shell alongside its probe, but only once
    the probe's channel has measured the round trip: at 50 ms that shell's channel gets a
    window above paramiko's 2 MiB (opened before the measurement, it got 2 MiB, and a 100 ms
    run fell from 72% to 57% of the link)."""
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "a.png").write_bytes(b"png")
    with WanLink(sshd.port, 0.05, 25e6) as link:
        box = SshTransport(make_container(through(sshd, link, tmp_path / "known_hosts"), remote))
        try:
            connection, _capabilities = box.session.get()
            assert connection.rtt_s is not None and connection.rtt_s >= 0.05
            tar = box._tar
            assert tar is not None
            channel = connection.shells.release(tar._shell)  # waits for it to start
            assert channel is not None
            # Sized from a measured round trip (>= 50 ms here; a later channel may measure
            # it again, so not compared with today's window()): above paramiko's 2 MiB.
            assert channel.in_window_size >= window_for(0.05) > 2 * 1024 * 1024
            close_quietly(channel)
        finally:
            box.close()
