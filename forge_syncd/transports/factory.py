"""Which transport reaches a container: the one place a transport is picked for its config.

`OPENERS` has one entry per value of the config's `transport:` key (`TransportKind`, and the
schema's choices: a unit test holds them equal). A new transport is its
`transports/<name>/transport.py`, its line here and its value in the config. Each opener
imports its transport when first used: a `--once` over local folders never loads paramiko.
"""

from __future__ import annotations

from collections.abc import Callable

from forge_syncd.config.model import ContainerConfig, TransportKind
from forge_syncd.remote.transport import Transport


def _ssh(container: ContainerConfig) -> Transport:
    from forge_syncd.transports.ssh.transport import SshTransport

    return SshTransport(container)


def _local(container: ContainerConfig) -> Transport:
    from forge_syncd.transports.local.transport import LocalTransport

    return LocalTransport(container)


def _docker(container: ContainerConfig) -> Transport:
    from forge_syncd.transports.docker.transport import DockerTransport

    return DockerTransport(container)


OPENERS: dict[TransportKind, Callable[[ContainerConfig], Transport]] = {
    "ssh": _ssh,
    "local": _local,
    "docker": _docker,
}


def open_transport(container: ContainerConfig) -> Transport:
    """Return the transport of `container` (its `transport:`), not connected yet (each
    method connects first)."""
    return OPENERS[container.transport](container)
