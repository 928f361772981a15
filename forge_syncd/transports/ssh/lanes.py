"""Extra SSH connections for a run with much to fetch over a long path (`sync.connections`).

One TCP connection on a long path that loses packets is held near MSS/RTT x 1.22/sqrt(p)
(Mathis et al.), whatever its SSH window: several connections, each with its own tar stream,
fill the link where one cannot. `connections_for` decides how many (pure); `ExtraConnections`
opens them alongside the container's kept-open one (in parallel, each authenticated as that
one is, its host key checked against the same known_hosts) and closes them when the run
ends. A server that refuses one (sshd's `MaxStartups`, a provider's connection limit) is no
error: the fetch carries on with those that opened, the refusal is said once, and no more
than that many are asked for again until the container reconnects.
"""

from __future__ import annotations

import threading

import paramiko

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.ssh.connection import Connection, connect

AUTO_MAX = 4  # `auto` never opens more (mscp and restic users see most of the gain by 4)
AUTO_MIN_RTT_S = 0.02  # a LAN or a box nearby: one connection fills the link
# `auto` adds a connection for each this many bytes to fetch: its handshake (~5 round trips,
# 0.5 s at 100 ms) is then small against the time its share takes.
AUTO_BYTES_PER_CONNECTION = 16 * 1024 * 1024
# A set number of connections still adds one only for each this many bytes: a handful of
# small files (a live-mode run) never waits for a handshake.
MIN_SHARE = 1024 * 1024


def connections_for(setting: int, rtt_s: float | None, files: int, size: int) -> int:
    """Given `sync.connections` (0: auto), the measured round trip (None: unknown) and a
    fetch's files and bytes, return how many connections it should use: a set number (at
    most one per MIN_SHARE bytes), or for auto one on a short path (under AUTO_MIN_RTT_S)
    or a small fetch, else one per AUTO_BYTES_PER_CONNECTION up to AUTO_MAX; never more
    than there are files."""
    if setting > 0:
        wanted = min(setting, size // MIN_SHARE)
    elif rtt_s is None or rtt_s < AUTO_MIN_RTT_S:
        wanted = 1
    else:
        wanted = min(AUTO_MAX, size // AUTO_BYTES_PER_CONNECTION)
    return max(1, min(wanted, files))


class ExtraConnections:
    """The extra connections of one container, besides the kept-open one of its session."""

    def __init__(self, container: ContainerConfig) -> None:
        self.container = container
        self.open: list[Connection] = []
        self.allowed: int | None = None  # extra ones the server let in, once it refused one
        self._said = False  # the refusal was reported (once until the container reconnects)
        self._pending: set[paramiko.Transport] = set()
        self._generation = 0  # counts `close` calls: one opened across a close is closed
        self._lock = threading.Lock()

    def ensure(self, wanted: int, rtt_s: float | None, share: int) -> str:
        """Open extra connections (all at once) until `wanted` are open, or as many as the
        server allowed before. `rtt_s`: the kept-open connection's round trip (it sizes
        their windows at once); `share`: how many connections transfer together (each
        gets its share of the container's window budget). Return why the server refused
        one, if it did and that was not said yet, else ""."""
        with self._lock:
            self.open = [c for c in self.open if c.alive]
            if self.allowed is not None:
                wanted = min(wanted, self.allowed)
            missing = wanted - len(self.open)
        if missing <= 0:
            return ""
        opened: list[Connection] = []
        errors: list[str] = []
        workers = [
            threading.Thread(
                target=self._open_one,
                args=(opened, errors, rtt_s, share),
                name=f"connect-{self.container.name}",
                daemon=True,
            )
            for _ in range(missing)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        with self._lock:
            self.open += opened
            if not errors:
                return ""
            self.allowed = len(self.open)
            if self._said:
                return ""
            self._said = True
        return errors[0]

    def _open_one(
        self, opened: list[Connection], errors: list[str], rtt_s: float | None, share: int
    ) -> None:
        mine: list[paramiko.Transport] = []
        generation = self._generation

        def connecting(transport: paramiko.Transport) -> None:
            mine.append(transport)
            with self._lock:
                self._pending.add(transport)

        try:
            connection = connect(self.container.host, self.container.ssh, connecting)
        except RemoteError as exc:
            errors.append(f"{exc.kind}: {exc}")
            return
        finally:
            with self._lock:
                self._pending.difference_update(mine)
        connection.rtt_s = rtt_s
        connection.window_share = share
        with self._lock:
            if generation == self._generation:
                opened.append(connection)
                return
        connection.close()  # closed while it was being opened: not wanted any more

    def close(self) -> None:
        """Close every extra connection, and abort those being opened (from any thread)."""
        with self._lock:
            closing, self.open = [*self.open], []
            pending, self._pending = [*self._pending], set()
            self._generation += 1
        for transport in pending:
            transport.close()
        for connection in closing:
            connection.close()

    def reset(self) -> None:
        """The container reconnects: close them all and forget what the server allowed."""
        self.close()
        with self._lock:
            self.allowed = None
            self._said = False
