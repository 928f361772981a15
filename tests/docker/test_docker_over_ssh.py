"""`docker.host: ssh://user@host:port`: the engine reached as Docker's CLI reaches it, through
the OpenSSH client running `docker system dial-stdio` on the host. Real parts: the test sshd
on 127.0.0.1, whose sessions find a `docker` that talks to the private test dockerd."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forge_syncd.config.model import SshConfig
from forge_syncd.transports.docker.engine import Engine, EngineDown
from tests.support.cli import forge_syncd
from tests.support.docker import Container, DockerEngine, docker_cli
from tests.support.sshd import SshdServer
from tests.support.trees import HOSTILE_NAMES, tree_files, write_file

OLD = 1_700_000_000.0


@pytest.fixture(scope="module")
def docker_sshd(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: DockerEngine
) -> Iterator[SshdServer]:
    """A real sshd whose sessions' `docker` is the Debian CLI aimed at the test engine (as
    DOCKER_HOST in a remote user's environment would aim it)."""
    work = tmp_path_factory.mktemp("docker-sshd")
    tools = work / "bin"
    tools.mkdir()
    wrapper = tools / "docker"
    wrapper.write_text(
        f"#!/bin/sh\nDOCKER_HOST='{docker_engine.host}' DOCKER_CONFIG='{work}/cli'"
        f' exec {docker_cli()} "$@"\n'
    )
    wrapper.chmod(0o755)
    server = SshdServer(work / "sshd", path_dirs=[tools]).start()
    yield server
    server.stop()


def ssh_host(server: SshdServer) -> str:
    return f"ssh://{server.user}@127.0.0.1:{server.port}"


def test_a_sync_through_an_engine_over_ssh_is_byte_identical(
    tmp_path: Path,
    docker_sshd: SshdServer,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
) -> None:
    """`forge-syncd --once` with `docker.host: ssh://...` (the daemon's key and known_hosts
    from `defaults.ssh`) copies every file of the container's folder, hostile names
    included, byte-identical with its mtime, and exits 0."""
    source = tmp_path / "outputs"
    for n, name in enumerate(HOSTILE_NAMES):
        write_file(os.path.join(os.fsencode(source), name + b".png"), os.urandom(5000 + n), OLD)
    write_file(source / "day 1" / "big.png", os.urandom(3_000_000), OLD + 7)
    box = docker_run(docker_engine.gnu_image(), binds={source: "/data"})
    config = tmp_path / "forge-sync.yaml"
    config.write_text(
        f"""\
media_root: {tmp_path}/media
state_dir: {tmp_path}/state
log: {{file: {tmp_path}/log.jsonl}}
control: {{socket: {tmp_path}/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{identity_file: {docker_sshd.client_key}, known_hosts: {docker_sshd.known_hosts}}}
containers:
  - name: far-comfy
    transport: docker
    container: {box.name}
    kind: generic
    root: /data
    docker: {{host: "{ssh_host(docker_sshd)}"}}
    sync: {{settle: 0s}}
"""
    )
    result = forge_syncd("--once", "--config", str(config), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_files(tmp_path / "media" / "far-comfy") == tree_files(source)


def test_an_engine_unreachable_through_ssh_is_one_clear_error(
    tmp_path: Path, docker_sshd: SshdServer
) -> None:
    """A host key the daemon's known_hosts lacks (ssh refuses it) is EngineDown naming the
    engine and quoting ssh's own refusal, not a traceback or a hang."""
    (tmp_path / "known_hosts").write_text("")
    ssh = SshConfig(
        identity_file=docker_sshd.client_key,
        known_hosts=tmp_path / "known_hosts",
        connect_timeout_s=5,
    )
    engine = Engine(ssh_host(docker_sshd), "any", "root", 10, ssh)
    with pytest.raises(EngineDown) as raised:
        engine.request("GET", "/_ping")
    message = str(raised.value)
    assert message.startswith(f"the Docker engine at {ssh_host(docker_sshd)} does not answer")
    assert "Host key verification failed" in message, message
