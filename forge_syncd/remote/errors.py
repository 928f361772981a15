"""Classified remote failures. `kind` is the label of `forge_sync_errors_total{kind}`."""

from __future__ import annotations


class RemoteError(Exception):
    """A failure talking to a container. Subclasses say what kind of failure."""

    kind = "remote"


class ConnectError(RemoteError):
    """The TCP connection or the SSH handshake failed (refused, timed out, no such host)."""

    kind = "connect"


class AuthError(RemoteError):
    """The server refused our key."""

    kind = "auth"


class HostKeyError(RemoteError):
    """The server's host key is unknown (strict policy) or differs from known_hosts."""

    kind = "host_key"


class ListingError(RemoteError):
    """The remote listing failed or returned something we refuse to trust."""

    kind = "listing"
