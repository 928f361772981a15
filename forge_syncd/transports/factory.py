"""Which transport reaches a container: the one place a transport is picked for its config.

SSH is the only transport so far; a new one is its `transports/<name>/transport.py`, one line
here and its value of the config's `transport:` key.
"""

from __future__ import annotations

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.transport import Transport
from forge_syncd.transports.docker.transport import DockerTransport
from forge_syncd.transports.local.transport import LocalTransport
from forge_syncd.transports.ssh.transport import SshTransport


def open_transport(container: ContainerConfig) -> Transport:
    """Return the transport of `container`, not connected yet (each method connects first)."""
    if container.transport == "docker":
        return DockerTransport(container)
    if container.transport == "local":
        return LocalTransport(container)
    return SshTransport(container)
