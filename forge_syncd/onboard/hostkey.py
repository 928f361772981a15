"""The host key check of `forge-syncctl add`: the key a box presents judged against
known_hosts and the fingerprint a person confirmed, and how an answer shows it."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.errors import HostKeyError
from forge_syncd.transports.ssh.hostkeys import HostKey, fingerprint, known_hosts_name
from forge_syncd.transports.ssh.trust import KnownKey, known_keys

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView


class Unconfirmed(Exception):
    """The box's host key needs a person's confirmation (raised before logging in)."""

    def __init__(self, key: HostKey, previous: list[KnownKey]) -> None:
        super().__init__("host key not confirmed")
        self.key = key
        self.previous = previous


def address(container: ContainerConfig) -> str:
    """The address a container is known by in known_hosts ("host" or "[host]:port")."""
    return known_hosts_name(container.host, container.ssh.port)


def key_fields(key: HostKey | None, previous: list[KnownKey]) -> dict[str, Any]:
    """How an answer shows the key presented and the keys known_hosts held before."""
    shown = None if key is None else {"type": key.get_name(), "fingerprint": fingerprint(key)}
    return {"host_key": shown, "previous": [k.as_dict() for k in previous]}


class KeyCheck:
    """Judges the key the box presents, in place of known_hosts (`connect(check_key=)`):
    a key known_hosts already holds for the address passes; a key it holds another key for
    is refused while a configured container uses that address (it CHANGED), else it needs
    confirming like an unknown one (the address was reused: rented boxes come and go);
    a confirmation is the fingerprint the caller passed. A fingerprint passed must match,
    known key or not."""

    def __init__(self, daemon: DaemonView, wanted: str | None, container: ContainerConfig) -> None:
        self.daemon = daemon
        self.wanted = wanted
        self.container = container
        self.key: HostKey | None = None
        self.previous: list[KnownKey] = []
        self.known = False

    def __call__(self, key: HostKey) -> None:
        self.key = key
        ssh = self.container.ssh
        known = known_keys(ssh.known_hosts, self.container.host, ssh.port)
        shown = fingerprint(key)
        wanted = self.wanted
        if wanted is not None and wanted != shown:
            raise HostKeyError(
                f"{address(self.container)} presents {key.get_name()} key {shown}, not the"
                f" {wanted} you gave: refused, nothing written"
            )
        if any(k.type == key.get_name() and k.fingerprint == shown for k in known):
            self.known = True
            return
        self.previous = known
        if known:
            users = self._users()
            if users:
                raise HostKeyError(
                    f"host key for {address(self.container)} CHANGED ({key.get_name()}"
                    f" {shown}); known_hosts {ssh.known_hosts} holds another key for it,"
                    f" used by {', '.join(users)}: refused. If the box was rebuilt, an admin"
                    " removes its line from known_hosts (or that container first)"
                )
        if wanted is None:
            raise Unconfirmed(key, known)

    def _users(self) -> list[str]:
        """The running containers reaching the same address through the same known_hosts."""
        mine = self.container
        return sorted(
            r.name
            for r in list(self.daemon.runners.values())
            if r.config.host == mine.host
            and r.config.ssh.port == mine.ssh.port
            and r.config.ssh.known_hosts == mine.ssh.known_hosts
        )


def writable_hint(exc: HostKeyError, daemon: DaemonView) -> str:
    """A hint for a known_hosts the daemon may not write ("" when that is not the cause)."""
    cause = exc.__cause__
    if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            "; the daemon may not write that file: point defaults.ssh.known_hosts at one it"
            f" may write, e.g. {daemon.config.state_dir / 'known_hosts'}"
        )
    return ""
