"""Which transport reaches a container: the one place a transport is picked for its config.

`OPENERS` has one entry per value of the config's `transport:` key (`TransportKind`, and the
schema's choices: a unit test holds them equal). A new transport is its
`transports/<name>/transport.py`, its line here and its value in the config. Each opener
imports its transport when first used: a `--once` over local folders never loads paramiko.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from forge_syncd.config.model import ContainerConfig, TransportKind
from forge_syncd.remote.transport import Transport

_warmed: dict[str, tuple[ContainerConfig, Transport]] = {}
_warmed_lock = threading.Lock()


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
    method connects first), or the one `warm` is connecting for it."""
    with _warmed_lock:
        warmed = _warmed.pop(container.name, None)
    if warmed is not None:
        if warmed[0] == container:
            return warmed[1]
        warmed[1].close()  # warmed for another config of that name
    return OPENERS[container.transport](container)


def warm(container: ContainerConfig) -> None:
    """Start connecting to `container` now, on a thread of its own, when it is reached over
    SSH (the login and the probe take ~8 round trips: 0.8 s at 100 ms); the next
    `open_transport` for it returns that transport. For `forge-syncd --once`: the round
    trips overlap the rest of the process's start (~0.3 s of imports and set-up). A failure
    is the transport's first answer, as if it had connected then."""
    if container.transport != "ssh":
        return
    from forge_syncd.transports.ssh.transport import SshTransport

    transport = SshTransport(container)
    with _warmed_lock:
        _warmed[container.name] = (container, transport)
    threading.Thread(
        target=transport.session.connect_early, name=f"warm-{container.name}", daemon=True
    ).start()
