"""Extra SSH connections for a run with much to fetch over a long path (`sync.connections`).

One TCP connection on a long path that loses packets is held near MSS/RTT x 1.22/sqrt(p)
(Mathis et al.), whatever its SSH window: several connections, each with its own tar stream,
fill the link where one cannot. `connections_for` decides how many (pure); each extra
`ExtraLane` opens its connection when the fetch asks it to (all at once, on their own
threads, while the kept-open connection already streams), authenticated as that one is, its
host key checked against the same known_hosts; `ExtraConnections` holds them and closes them
when the run ends. A server that refuses one (sshd's `MaxStartups`, a provider's connection
limit) is no error: the fetch carries on with those that opened, the refusal is said once,
and no more than that many are asked for again until the container reconnects.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import paramiko

from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.remote.errors import LaneRefused, RemoteError
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, FetchReport, TransferMethod
from forge_syncd.transports.pushed import PushedFiles
from forge_syncd.transports.ssh.connection import Connection, connect
from forge_syncd.transports.ssh.sftp import SftpStrategy
from forge_syncd.transports.ssh.tarfetch import TarStrategy

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
        self._said = False  # a refusal was reported (once until the container reconnects)
        self._refused = False  # the server refused one since the last `close`
        self._peak = 0  # the most open at once since the last `close`
        self._pending: set[paramiko.Transport] = set()
        self._generation = 0  # counts `close` calls: one opened across a close is closed
        self._lock = threading.Lock()

    def cap(self, wanted: int) -> int:
        """Given how many extra connections a fetch wants, return how many to ask for: no
        more than the server let in when it last refused one."""
        return wanted if self.allowed is None else min(wanted, self.allowed)

    def open_one(self, rtt_s: float | None, share: int) -> Connection:
        """Open one more extra connection and return it. `rtt_s`: the kept-open connection's
        round trip (it sizes the new one's windows at once); `share`: how many connections
        transfer together (each gets its share of the container's window budget). Raise
        LaneRefused if it cannot be opened (its `said` true after the first refusal)."""
        mine: list[paramiko.Transport] = []
        generation = self._generation

        def connecting(transport: paramiko.Transport) -> None:
            mine.append(transport)
            with self._lock:
                self._pending.add(transport)

        try:
            connection = connect(self.container.host, self.container.ssh, connecting)
        except RemoteError as exc:
            with self._lock:
                self._refused = True
                said, self._said = self._said, True
            raise LaneRefused(f"{exc.kind}: {exc}", said) from None
        finally:
            with self._lock:
                self._pending.difference_update(mine)
        connection.rtt_s = rtt_s
        connection.window_share = share
        with self._lock:
            if generation == self._generation:
                self.open.append(connection)
                self._peak = max(self._peak, len(self.open))
                return connection
        connection.close()  # closed while it was being opened: not wanted any more
        raise LaneRefused("closed while it was opened", said=True)

    def close(self) -> None:
        """Close every extra connection, and abort those being opened (from any thread);
        after a refusal, remember how many the server let in."""
        with self._lock:
            closing, self.open = [*self.open], []
            pending, self._pending = [*self._pending], set()
            self._generation += 1
            if self._refused:
                self.allowed = self._peak
            self._refused, self._peak = False, 0
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


def tar_then_sftp(
    tar: TarStrategy,
    sftp: Callable[[], SftpStrategy],
    items: Sequence[FetchItem],
    calls: FetchCallbacks,
    cancel: threading.Event,
) -> FetchReport:
    """Fetch `items` through `tar`; what its stream did not deliver (broken, lying, or its
    connection lost) is fetched again through `sftp()` (the kept-open connection's,
    reconnected if it was the one that broke), in the same call."""
    report = FetchReport(TransferMethod.TAR)
    retry: list[FetchItem] = []

    def tar_outcome(fetched: Fetched) -> None:
        if fetched.error_kind == FileKind.TRANSFER and not cancel.is_set():
            retry.append(fetched.item)
            report.fallback_reason = report.fallback_reason or fetched.error or ""
        else:
            calls.on_fetched(fetched)

    tar.fetch(items, dataclasses.replace(calls, on_fetched=tar_outcome), cancel)
    report.refused = list(tar.refused)
    report.fallback = len(retry)
    if retry:
        sftp_fetch(sftp, retry, calls, cancel)
    return report


def sftp_fetch(
    sftp: Callable[[], SftpStrategy],
    items: Sequence[FetchItem],
    calls: FetchCallbacks,
    cancel: threading.Event,
) -> None:
    """Fetch `items` through `sftp()`. Files that failed because its connection was lost
    under it (paramiko may not have seen a dead connection yet when the SFTP session was
    asked for) are fetched once more through a new `sftp()`, which reconnects: a container
    that went away then fails the run as a refused connect (ConnectError, unreachable), not
    as one transfer error per file."""
    strategy = sftp()
    lost: list[Fetched] = []

    def outcome(fetched: Fetched) -> None:
        if fetched.error_kind == FileKind.TRANSFER and not cancel.is_set():
            lost.append(fetched)
        else:
            calls.on_fetched(fetched)

    strategy.fetch(items, dataclasses.replace(calls, on_fetched=outcome), cancel)
    if lost and not strategy.connection.alive and not cancel.is_set():
        sftp().fetch([fetched.item for fetched in lost], calls, cancel)
        return
    for fetched in lost:
        calls.on_fetched(fetched)


class ExtraLane:
    """An extra connection as a fetch lane (`ready` opens it): its own tar stream (under the
    container's rate limit), the kept-open connection's SFTP fallback."""

    def __init__(
        self,
        extra: ExtraConnections,
        own: TarStrategy,
        sftp: Callable[[], SftpStrategy],
        share: int,
        pushed: PushedFiles,
    ) -> None:
        """`own`: the kept-open connection's tar stream (its root, limit, clock and round
        trip are this lane's too); `share`: how many connections transfer together;
        `pushed`: the files the live watcher pushed (landed, not fetched again)."""
        self.extra = extra
        self.own = own
        self.sftp = sftp
        self.share = share
        self.pushed = pushed
        self.connection: Connection | None = None
        self.tar: TarStrategy | None = None

    def ready(self) -> None:
        """Open the lane's connection and start its tar stream's shell (on a thread of its
        own: the stream then starts one round trip after it is dealt its files, not after
        a channel is opened and a shell started). Raise LaneRefused."""
        if self.connection is None:
            self.connection = self.extra.open_one(self.own.connection.rtt_s, self.share)
            own = self.own
            self.tar = TarStrategy(self.connection, own.root, own.limiter, own.earliest_now)
            self.tar.prepare()

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """Fetch through a tar stream of the lane's connection (opened if `ready` was not
        called). Raise LaneRefused if it was lost meanwhile (nothing handed over). Files the
        live watcher pushed are landed first, as on the kept-open connection."""
        items = self.pushed.land(items, calls)
        if not items:
            return FetchReport(TransferMethod.PUSH)
        self.ready()
        assert self.connection is not None and self.tar is not None
        if not self.connection.alive:
            raise LaneRefused("its connection was lost", said=True)
        return tar_then_sftp(self.tar, self.sftp, items, calls, cancel)
