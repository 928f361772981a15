"""A container's kept-open connection and what its remote offers, reconnected on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paramiko

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.errors import EndpointError, RemoteError
from forge_syncd.transports.shell.listing import find_script
from forge_syncd.transports.shell.probe import Capabilities
from forge_syncd.transports.shell.result import ScriptResult
from forge_syncd.transports.ssh.connection import Connection, connect
from forge_syncd.transports.ssh.probe import probe
from forge_syncd.transports.ssh.shells import close_quietly

FIRST_LISTING_MAX_AGE_S = 10.0


class RemoteSession:
    """Holds at most one live Connection per container; safe to call from one run at a time."""

    def __init__(
        self,
        container: ContainerConfig,
        on_connect: Callable[[Connection], None] | None = None,
    ) -> None:
        """`on_connect` is handed each new connection before the probe runs on it (to start
        what the first run will likely need alongside the probe's round trips); it must not
        block or raise."""
        self.container = container
        self.on_connect = on_connect
        self._connection: Connection | None = None
        self._capabilities = Capabilities()
        self._lock = threading.Lock()
        self._pending: paramiko.Transport | None = None
        # The listing the probe took with it when connecting (when, result): the next list
        # uses it instead of running find again, if it comes soon enough.
        self._first_listing: tuple[float, ScriptResult] | None = None
        self._early_error: RemoteError | None = None  # what `connect_early` met

    def get(self) -> tuple[Connection, Capabilities]:
        """Return a live connection and the remote's capabilities, connecting if needed.

        Raise the classified errors of `forge_syncd.remote.errors`.
        """
        with self._lock:
            if self._early_error is not None:
                error, self._early_error = self._early_error, None
                raise error
            return self._get_locked()

    def connect_early(self) -> None:
        """Connect (and probe) ahead of the first caller, on the caller's thread (a thread
        of its own: `factory.warm`). Whoever calls `get` meanwhile waits for it; the first
        `get` after a failure raises what it met, instead of connecting (and perhaps timing
        out) once more."""
        with self._lock:
            try:
                self._get_locked()
            except RemoteError as exc:
                self._early_error = exc

    def _get_locked(self) -> tuple[Connection, Capabilities]:
        if self._connection is None or not self._connection.alive:
            self._drop()
            connection = connect(self.container.host, self.container.ssh, self._connecting)
            self._pending = None
            sync = self.container.sync
            try:
                if self.on_connect is not None:
                    self.on_connect(connection)
                self._capabilities, listing = probe(
                    connection,
                    find_script(self.container.root, self.container.folders),
                    sync.max_listing_size,
                )
                self._first_listing = (time.monotonic(), listing) if listing else None
                if not self._capabilities.shell:
                    self._check_sftp(connection, self._capabilities.said)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection, self._capabilities

    @property
    def connected(self) -> bool:
        """Whether a live connection is open now (never connects)."""
        connection = self._connection
        return connection is not None and connection.alive

    @staticmethod
    def _check_sftp(connection: Connection, said: str) -> None:
        """No command ran: without SFTP either, nothing can be done on this endpoint. Raise
        EndpointError saying so plainly."""
        try:
            close_quietly(connection.open_sftp())
        except RemoteError as exc:
            raise EndpointError(
                "no SFTP or exec on this endpoint: use SSH over exposed TCP (a proxied SSH"
                f" such as RunPod's gives only a terminal). Exec: {said}. SFTP: {exc}"
            ) from None

    def take_first_listing(self, max_age_s: float = FIRST_LISTING_MAX_AGE_S) -> ScriptResult | None:
        """Return, once, the find listing the probe took when this connection was made, if
        it is at most `max_age_s` old (else None: list afresh)."""
        with self._lock:
            taken, self._first_listing = self._first_listing, None
        if taken is None or time.monotonic() - taken[0] > max_age_s:
            return None
        return taken[1]

    def _connecting(self, transport: paramiko.Transport) -> None:
        self._pending = transport

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        """Close the connection, and abort one being opened (from any thread)."""
        pending = self._pending
        if pending is not None:
            pending.close()
        self._drop()
