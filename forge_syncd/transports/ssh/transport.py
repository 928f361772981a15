"""One connected container over SSH: list, hash, fetch, delete, watch.

`SshTransport` is the SSH implementation of `remote.transport.Transport`, over the container's
kept-open connection, and the only place that chooses between the fast paths (one GNU
`find`, one `tar` stream, `sha256sum`, `xargs` + `stat` deletes) and plain SFTP, including
the fallback from a broken or lying tar stream to SFTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from forge_syncd.config.model import ContainerConfig
from forge_syncd.limits.registry import Limiter, limiter_for
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.transport import Lanes, Probe, WatchFeed
from forge_syncd.remote.types import (
    Deleted,
    FetchCallbacks,
    FetchItem,
    FetchReport,
    Limits,
    Listing,
    RemoteFile,
    TransferMethod,
)
from forge_syncd.transports.pushed import PushedFiles
from forge_syncd.transports.receive import remote_file
from forge_syncd.transports.shell.listing import find_script
from forge_syncd.transports.ssh.connection import Connection
from forge_syncd.transports.ssh.delete import delete_with_command, delete_with_sftp
from forge_syncd.transports.ssh.hashing import remote_sha256, sftp_sha256
from forge_syncd.transports.ssh.lanes import (
    ExtraConnections,
    ExtraLane,
    connections_for,
    sftp_fetch,
    tar_then_sftp,
)
from forge_syncd.transports.ssh.listing import (
    list_with_find,
    list_with_sftp,
    listing_from_find,
)
from forge_syncd.transports.ssh.ping import round_trip
from forge_syncd.transports.ssh.session import RemoteSession
from forge_syncd.transports.ssh.sftp import SftpStrategy
from forge_syncd.transports.ssh.shells import close_quietly
from forge_syncd.transports.ssh.tarfetch import TarStrategy
from forge_syncd.transports.ssh.watch import WatchStream


class SshTransport:
    """The SSH `Transport`: a container over its kept-open connection (`RemoteSession`)."""

    kind = "ssh"

    def __init__(self, container: ContainerConfig, session: RemoteSession | None = None) -> None:
        self.container = container
        self.session = session or RemoteSession(container, self._connected)
        self._tar: TarStrategy | None = None
        self._pushed = PushedFiles()  # by the live watcher, for the next fetch
        self._extra = ExtraConnections(container)  # a run's extra fetch lanes (`lanes.py`)

    def probe(self) -> Probe:
        """The clock and fast paths the connection's probe found (connects if needed)."""
        capabilities = self.session.get()[1]
        return Probe(ContainerClock(capabilities.clock_offset_s), None, capabilities.fast_paths)

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        """One GNU find where the remote has it, else an SFTP walk (stopped by `cancel`).
        Raise ListingError past the container's `max_listing_files` / `max_listing_size`."""
        connection, capabilities = self.session.get()
        sync = self.container.sync
        limits = Limits(sync.max_listing_files, sync.max_listing_size)
        if capabilities.gnu_find:
            first = self.session.take_first_listing()
            if first is None:
                return list_with_find(
                    connection, self.container.root, self.container.folders, reuse, limits
                )
            # The probe listed with it: start the next poll's listing shell, as a listing
            # run on its own does.
            connection.shells.prepare(find_script(self.container.root, self.container.folders))
            return listing_from_find(first, self.container.root, reuse, limits)
        sftp = connection.open_sftp()
        try:
            return list_with_sftp(sftp, self.container.root, self.container.folders, limits, cancel)
        finally:
            close_quietly(sftp)

    def hashes(
        self, paths: Sequence[bytes], cancel: threading.Event | None = None
    ) -> dict[bytes, str]:
        """One `sha256sum` for all (names on stdin) where the remote has it, else each file
        read over SFTP; `cancel` stops either (RemoteError)."""
        connection, capabilities = self.session.get()
        if capabilities.remote_hashing:
            return remote_sha256(connection, self.container.root, paths, cancel)
        found: dict[bytes, str] = {}
        sftp = connection.open_sftp()
        try:
            for path in paths:
                try:
                    found[path] = sftp_sha256(sftp, remote_file(self.container.root, path), cancel)
                except OSError:
                    continue  # vanished: its fetch or the purge check reports it
        finally:
            close_quietly(sftp)
        return found

    def prepare_fetch(self) -> None:
        """Start the remote tar's shell now (while the caller plans), where tar is used."""
        tar = self._tar_strategy()
        if tar is not None:
            tar.prepare()

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """One tar stream where the remote has GNU tar (fast for many files), else SFTP.
        Files the tar stream did not deliver (a broken or lying remote tar) are fetched
        again over SFTP, in the same call. Files the live watcher pushed are landed first."""
        items = self._pushed.land(items, calls)
        if not items:
            return FetchReport(TransferMethod.PUSH)
        tar = self._tar_strategy()
        if tar is None:
            sftp_fetch(self._sftp, items, calls, cancel)
            return FetchReport(TransferMethod.SFTP)
        return tar_then_sftp(tar, self._sftp, items, calls, cancel)

    def fetch_lanes(self, files: int, size: int) -> Lanes:
        """This transport's own connection, and the extra ones `sync.connections` asks for
        on this path (`lanes.py`), each opened when first used, with a tar stream of its
        own under the same rate limit. SFTP only: one connection (its `transfers` already
        run in parallel)."""
        own = self._tar_strategy()
        if own is None:
            return Lanes()
        wanted = connections_for(self.container.sync.connections, own.connection.rtt_s, files, size)
        extra = self._extra.cap(wanted - 1)
        share = 1 + extra
        return Lanes(
            [ExtraLane(self._extra, own, self._sftp, share, self._pushed) for _ in range(extra)]
        )

    @property
    def connections(self) -> int:
        return int(self.session.connected) + len(self._extra.open)

    def delete(self, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
        """One remote command per call where the remote has xargs, stat and sha256sum,
        else SFTP (which reads each file back to hash it)."""
        connection, capabilities = self.session.get()
        if capabilities.remote_delete:
            return delete_with_command(connection, self.container.root, files, sha256)
        sftp = connection.open_sftp()
        try:
            return delete_with_sftp(sftp, self.container.root, files, sha256)
        finally:
            close_quietly(sftp)

    def end_run(self, keep_ready: bool = False) -> None:
        self._extra.close()  # idle until the next run with much to fetch
        # Kept ready only on a connection still open: a run that lost it must not wait
        # here for a new one (the next run connects).
        if keep_ready and self.session.connected:
            try:
                self.prepare_fetch()
                return
            except RemoteError:
                pass  # the connection is gone: nothing to keep
        if self._tar is not None:
            self._tar.discard()
            self._tar = None

    def watch(self) -> WatchFeed:
        """One watcher script on its own channel of the kept-open connection."""
        connection, _ = self.session.get()
        # A listing the probe took when the watcher connected predates the watches: the
        # reconciling run queued once they are placed must list afresh, not reuse it.
        self.session.take_first_listing()
        return WatchStream.start(
            connection,
            self.container.root,
            self.container.folders,
            self.container.ssh.keepalive_s,
            self._pushed,
        )

    def close(self) -> None:
        self.end_run()
        self._extra.reset()  # what the server allowed is learnt again on the next connection
        self.session.close()

    def _connected(self, connection: Connection) -> None:
        """A new connection, before its probe: start the tar stream's shell as soon as the
        probe's channel has measured the round trip (which sizes the stream's window), its
        round trips alongside the probe's. A first run that fetches finds it ready; one
        that does not, or a remote without GNU tar, closes it unused."""
        connection.when_measured(self._new_tar(connection).prepare)

    def _tar_strategy(self) -> TarStrategy | None:
        connection, capabilities = self.session.get()
        if not capabilities.tar_stream:
            if self._tar is not None:
                self._tar.discard()  # the one started on connecting, before the probe said
                self._tar = None
            return None
        if self._tar is not None and self._tar.connection is connection:
            return self._tar
        return self._new_tar(connection)

    def _new_tar(self, connection: Connection) -> TarStrategy:
        self._tar = TarStrategy(
            connection,
            self.container.root,
            self._limiter(connection),
            self._earliest_now,
        )
        return self._tar

    def _sftp(self) -> SftpStrategy:
        connection, _ = self.session.get()
        sync = self.container.sync
        return SftpStrategy(
            connection,
            self.container.root,
            sync.transfers,
            self._limiter(connection),
            self._earliest_now,
        )

    def _limiter(self, connection: Connection) -> Limiter:
        """The container's limiter (`limits/`), timing round trips on `connection`."""
        limiter = limiter_for(self.container)
        limiter.set_rtt_source(lambda: round_trip(connection))
        return limiter

    def _earliest_now(self) -> int:
        """A time the container's clock has surely passed (see `remote/clock.py`)."""
        return self.probe().clock.surely_passed_ns()
