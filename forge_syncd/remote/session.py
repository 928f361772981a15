"""A container's kept-open connection and what its remote offers, reconnected on demand."""

from __future__ import annotations

import threading

import paramiko

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.connection import Connection, connect
from forge_syncd.remote.probe import Capabilities, probe


class RemoteSession:
    """Holds at most one live Connection per container; safe to call from one run at a time."""

    def __init__(self, container: ContainerConfig) -> None:
        self.container = container
        self._connection: Connection | None = None
        self._capabilities = Capabilities()
        self._lock = threading.Lock()
        self._pending: paramiko.Transport | None = None

    def get(self) -> tuple[Connection, Capabilities]:
        """Return a live connection and the remote's capabilities, connecting if needed.

        Raise the classified errors of `forge_syncd.remote.errors`.
        """
        with self._lock:
            if self._connection is None or not self._connection.alive:
                self._drop()
                connection = connect(self.container.host, self.container.ssh, self._connecting)
                self._pending = None
                try:
                    self._capabilities = probe(connection)
                except BaseException:
                    connection.close()
                    raise
                self._connection = connection
            return self._connection, self._capabilities

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
