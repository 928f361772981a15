"""`transports/factory.py`: the one place a container's `transport:` picks its transport."""

from __future__ import annotations

from typing import get_args

import pytest

from forge_syncd.config.model import ContainerConfig, TransportKind
from forge_syncd.config.schema import CONTAINER
from forge_syncd.remote.transport import Transport
from forge_syncd.transports import factory
from forge_syncd.transports.ssh.transport import SshTransport
from tests.support.fake_remote import FakeRemote

BOX = ContainerConfig(name="box", kind="generic", host="h", root="/r", folders=())


def test_openers_are_exactly_the_transports_the_config_accepts() -> None:
    """Every value `transport:` accepts (the schema's choices, and the model's
    `TransportKind`) has an opener, and every opener is for such a value: a transport added
    to the config without its opener (or the other way round) fails here, not at run time
    with a KeyError."""
    choices = set(CONTAINER["transport"].choices)
    assert set(factory.OPENERS) == choices == set(get_args(TransportKind))


def test_open_transport_dispatches_on_the_containers_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`open_transport` calls the opener of the container's `transport:` with the
    container, and returns what it opened (not connected: nothing is dialled here). The
    default `ssh` opens an `SshTransport`."""
    transport = factory.open_transport(BOX)
    assert isinstance(transport, SshTransport) and transport.container is BOX
    opened: list[ContainerConfig] = []

    def fake(container: ContainerConfig) -> Transport:
        opened.append(container)
        return FakeRemote({})

    monkeypatch.setitem(factory.OPENERS, "ssh", fake)
    assert isinstance(factory.open_transport(BOX), FakeRemote)
    assert opened == [BOX]
