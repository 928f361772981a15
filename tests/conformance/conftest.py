"""The containers the transport conformance tests run against, one per `Transport`.

Each entry of `BOXES` makes a `Box`: a container with files a test can write and read back
from the container's side, and the `Transport` that reaches it. The tests in this folder run
once per entry; a new transport (issue 27: docker, local) adds a `Box` class and one entry.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from forge_syncd.config.model import ContainerConfig, DockerConfig, SyncConfig
from forge_syncd.remote.transport import Transport
from forge_syncd.transports.docker.transport import DockerTransport
from forge_syncd.transports.local.transport import LocalTransport
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.fake_remote import FakeRemote
from tests.support.hostile import disabled
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


class Box(Protocol):
    """A container seen from both sides: `transport` (what a run uses) and the container's
    own side, which writes and reads its files directly."""

    transport: Transport

    def put(self, path: bytes, data: bytes, mtime_s: int) -> None:
        """A program on the container writes the file `path` (relative to the root) and
        sets its mtime; a running watcher sees the write."""

    def remove(self, path: bytes) -> None:
        """A program on the container deletes the file `path`."""

    def held(self) -> dict[bytes, tuple[bytes, int]]:
        """Return what the container holds now: {path: (bytes, mtime_ns)}."""

    def close(self) -> None:
        """Disconnect and stop what the box started."""


class FakeBox:
    """The in-memory container of the unit tier (`tests/support/fake_remote.py`)."""

    def __init__(self) -> None:
        self.fake = FakeRemote()
        self.transport: Transport = self.fake

    def put(self, path: bytes, data: bytes, mtime_s: int) -> None:
        watcher = self.fake.watcher
        if watcher is not None and not watcher.closed:
            self.fake.written(path, data, mtime_s)  # the watcher reports it
        else:
            self.fake.write(path, data, mtime_s)

    def remove(self, path: bytes) -> None:
        del self.fake.files[path]

    def held(self) -> dict[bytes, tuple[bytes, int]]:
        return dict(self.fake.files)

    def close(self) -> None:
        self.transport.close()


class SshBox:
    """A folder on this machine served by a real sshd (`tests/support/sshd.py`), reached by
    the SSH transport with the tools that sshd's sessions have."""

    def __init__(self, sshd: SshdServer, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.transport = SshTransport(make_container(sshd, root))

    def put(self, path: bytes, data: bytes, mtime_s: int) -> None:
        write_file(os.path.join(os.fsencode(self.root), path), data, mtime_s)

    def remove(self, path: bytes) -> None:
        os.unlink(os.path.join(os.fsencode(self.root), path))

    def held(self) -> dict[bytes, tuple[bytes, int]]:
        return tree_files(self.root)

    def close(self) -> None:
        self.transport.close()


class LocalBox(SshBox):
    """A folder on this machine reached by the local transport (`transport: local`)."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        container = ContainerConfig(
            name="local-a",
            kind="generic",
            host="",
            root=str(root),
            folders=(),
            transport="local",
            sync=dataclasses.replace(SyncConfig(), settle_s=0.0),
        )
        self.transport = LocalTransport(container)


class DockerBox(SshBox):
    """A folder on this machine bind-mounted at /data into a container of the private
    engine (`tests/support/docker.py`), reached by the Docker transport: the GNU image
    (with python3) takes the fast paths, the busybox one the fallbacks."""

    def __init__(self, request: pytest.FixtureRequest, root: Path, busybox: bool) -> None:
        root.mkdir()
        self.root = root
        engine = request.getfixturevalue("docker_engine")
        image = engine.busybox_image() if busybox else engine.gnu_image(python=True)
        self.container = request.getfixturevalue("docker_run")(image, binds={root: "/data"})
        config = ContainerConfig(
            name="docker-a",
            kind="generic",
            host="",
            root="/data",
            folders=(),
            transport="docker",
            docker=DockerConfig(host=engine.host, container=self.container.name),
            sync=dataclasses.replace(SyncConfig(), settle_s=0.0),
        )
        self.transport = DockerTransport(config)


@dataclass(frozen=True)
class BoxKind:
    """How to make one kind of Box, given the test's request and a scratch folder (a box
    that needs a server asks for its fixture there, so the other kinds never start it);
    `watches`: the container has a live watcher (the watch tests run on it)."""

    make: Callable[[pytest.FixtureRequest, Path], Box]
    watches: bool = True


BOXES: dict[str, BoxKind] = {
    "fake": BoxKind(lambda request, tmp: FakeBox()),
    # The fast paths: one find, one tar stream, python3 hashes and deletes, inotifywait.
    "ssh": BoxKind(lambda request, tmp: SshBox(request.getfixturevalue("sshd"), tmp / "c")),
    # The fallbacks: an SFTP walk, SFTP reads, hashes and deletes over SFTP. Without find
    # or python3 the container has no watcher (live mode polls it).
    "ssh-sftp": BoxKind(
        lambda request, tmp: SshBox(request.getfixturevalue("bare_sshd"), tmp / "c"),
        watches=False,
    ),
    # A folder of this machine: the same find and watcher scripts, copies in-process.
    "local": BoxKind(lambda request, tmp: LocalBox(tmp / "c")),
    # A Docker container through the Engine API: GNU find, tar, python3 (the fast paths).
    "docker": BoxKind(lambda request, tmp: DockerBox(request, tmp / "c", busybox=False)),
    # Busybox only: the busybox listing, the archive endpoint; no watcher (polls).
    "docker-busybox": BoxKind(
        lambda request, tmp: DockerBox(request, tmp / "c", busybox=True), watches=False
    ),
}


@pytest.fixture(scope="session")
def bare_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A real sshd whose sessions lack every tool a fast path or a watcher needs."""
    workdir = tmp_path_factory.mktemp("bare-sshd")
    tools = disabled(workdir / "bin", "find", "tar", "sha256sum", "python3", "inotifywait")
    server = SshdServer(workdir, path_dirs=[tools]).start()
    yield server
    server.stop()


@pytest.fixture(params=list(BOXES))
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Box]:
    """A container of each kind in turn (`BOXES`), disconnected after the test."""
    made = BOXES[request.param].make(request, tmp_path)
    yield made
    made.close()


@pytest.fixture(params=[name for name, kind in BOXES.items() if kind.watches])
def watched_box(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Box]:
    """A container of each kind that has a live watcher, disconnected after the test."""
    made = BOXES[request.param].make(request, tmp_path)
    yield made
    made.close()
