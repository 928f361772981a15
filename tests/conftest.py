"""Shared fixtures: a real OpenSSH server on 127.0.0.1 and containers pointing at it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.config.model import ContainerConfig, SshConfig, SyncConfig
from forge_syncd.logs import configure
from tests.support.sshd import SshdServer


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """One real sshd for the whole session (own host key, own authorized_keys)."""
    server = SshdServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _quiet_logs(tmp_path: Path) -> None:
    """Each test logs JSON to its own file, so tests can read what was logged."""
    configure("debug", tmp_path / "log.jsonl")


def make_container(
    sshd: SshdServer, root: Path, name: str = "forge-a", kind: str = "generic", **sync: Any
) -> ContainerConfig:
    """Return a container config reaching `root` through `sshd`; `sync` overrides SyncConfig."""
    sync.setdefault("settle_s", 0.0)
    folders: tuple[str, ...] = ()
    if kind == "forge":
        folders = (
            "txt2img-images",
            "img2img-images",
            "extras-images",
            "txt2img-grids",
            "img2img-grids",
        )
    return ContainerConfig(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        host="127.0.0.1",
        root=str(root),
        folders=folders,
        ssh=SshConfig(
            user=sshd.user,
            port=sshd.port,
            identity_file=sshd.client_key,
            known_hosts=sshd.known_hosts,
            connect_timeout_s=5.0,
        ),
        sync=dataclasses.replace(SyncConfig(), **sync),
    )
