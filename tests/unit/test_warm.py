"""`forge-syncd --once` starts connecting before its runner exists (`factory.warm`): the
transport opened next for that container is the one connecting, and a failure is its first
answer, not a reason to connect (and perhaps time out) a second time."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from forge_syncd.config.model import ContainerConfig, SshConfig
from forge_syncd.remote.errors import ConnectError
from forge_syncd.transports import factory
from forge_syncd.transports.ssh import session as session_module
from forge_syncd.transports.ssh.transport import SshTransport
from tests.support.daemon import wait_until


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def box(tmp_path: Path, name: str = "box", root: str = "/out") -> ContainerConfig:
    ssh = SshConfig(
        port=closed_port(),
        identity_file=tmp_path / "key",
        known_hosts=tmp_path / "known_hosts",
        connect_timeout_s=5.0,
    )
    return ContainerConfig(
        name=name, kind="generic", host="127.0.0.1", root=root, folders=(), ssh=ssh
    )


def test_the_warmed_transport_is_opened_and_its_failure_answers_the_first_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []
    real_connect = session_module.connect

    def counting_connect(*args: object, **kwargs: object) -> object:
        attempts.append("connect")
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "connect", counting_connect)
    container = box(tmp_path)
    factory.warm(container)
    wait_until(lambda: attempts, timeout=10, what="the early connect")
    transport = factory.open_transport(container)
    assert isinstance(transport, SshTransport)
    with pytest.raises(ConnectError):
        transport.probe()  # waits for the early connect, then raises what it met
    assert attempts == ["connect"]
    with pytest.raises(ConnectError):
        transport.probe()  # a later call connects again
    assert attempts == ["connect", "connect"]
    transport.close()
    assert factory.open_transport(container) is not transport  # taken once


def test_a_warmed_transport_for_another_config_of_that_name_is_not_used(tmp_path: Path) -> None:
    warmed = box(tmp_path)
    factory.warm(warmed)
    other = box(tmp_path, root="/elsewhere")
    transport = factory.open_transport(other)
    assert isinstance(transport, SshTransport) and transport.container == other
    transport.close()


def test_only_ssh_containers_are_warmed(tmp_path: Path) -> None:
    local = ContainerConfig(
        name="here", kind="generic", host="", root=str(tmp_path), folders=(), transport="local"
    )
    factory.warm(local)
    assert "here" not in factory._warmed
