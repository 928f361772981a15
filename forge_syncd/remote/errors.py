"""Classified remote failures. `kind` is the label of `forge_sync_errors_total{kind}`."""

from __future__ import annotations

from forge_syncd.errorkinds import ErrorKind


class RemoteError(Exception):
    """A failure talking to a container. Subclasses say what kind of failure."""

    kind = ErrorKind.REMOTE


class ConnectError(RemoteError):
    """The TCP connection or the SSH handshake failed (refused, timed out, no such host)."""

    kind = ErrorKind.CONNECT


class AuthError(RemoteError):
    """The server refused our key."""

    kind = ErrorKind.AUTH


class HostKeyError(RemoteError):
    """The server's host key is unknown (strict policy) or differs from known_hosts."""

    kind = ErrorKind.HOST_KEY


class ListingError(RemoteError):
    """The remote listing failed or returned something we refuse to trust."""

    kind = ErrorKind.LISTING


class EndpointError(RemoteError):
    """The SSH endpoint authenticates but runs neither commands nor SFTP (RunPod's proxied
    SSH gives only an interactive terminal)."""

    kind = ErrorKind.ENDPOINT


class WatchEnded(RemoteError):
    """The watcher's channel ended (the watcher died, the connection dropped, or it fell
    silent for longer than its keepalive allows)."""


class LaneRefused(RemoteError):
    """An extra fetch lane could not open its connection (the server refused one more
    login, `MaxStartups`): no error of the run. It handed nothing over; its share goes to
    the other lanes. `said`: the transport reported such a refusal before (log it once)."""

    def __init__(self, message: str, said: bool = False) -> None:
        super().__init__(message)
        self.said = said
