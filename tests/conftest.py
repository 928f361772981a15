"""Shared fixtures: a real OpenSSH server on 127.0.0.1 and containers pointing at it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.config.model import ContainerConfig, SshConfig, SyncConfig
from forge_syncd.logs import configure
from tests.support import browser as browsers
from tests.support import docker, rclone, reflink
from tests.support.sshd import SshdServer


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """One real sshd for the whole session (own host key, own authorized_keys)."""
    server = SshdServer(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerEngine]:
    """One private dockerd for the session, started by the first test that asks for it (the
    Docker tier); skipped with one clear line where no engine can start (tests/support/
    docker.py). Stopped by PID at the end, leaving no process or mount behind."""
    engine = docker.engine_or_skip()
    yield engine
    engine.stop()


@pytest.fixture
def docker_run(
    docker_engine: docker.DockerEngine,
) -> Iterator[Callable[..., docker.Container]]:
    """`docker_run(image, **options)` starts a container on the session's engine
    (`DockerEngine.run`); every container it started is removed when the test ends."""
    started: list[docker.Container] = []

    def run(image: str, **options: Any) -> docker.Container:
        container = docker_engine.run(image, **options)
        started.append(container)
        return container

    yield run
    for container in started:
        container.rm()


@pytest.fixture(scope="session")
def xfs_mount() -> Iterator[Path]:
    """A loop-mounted XFS image (reflinks) for the session, made by the first test that asks;
    unmounted and removed at the end (tests/support/reflink.py). Skipped, saying why, where
    it cannot be made (not root, no xfsprogs, no loop devices)."""
    filesystem = reflink.mount_or_skip("xfs")
    yield filesystem.mountpoint
    filesystem.stop()


@pytest.fixture
def reflink_dir(xfs_mount: Path) -> Iterator[Path]:
    """A fresh folder on the session's XFS mount, removed after the test."""
    folder = Path(tempfile.mkdtemp(dir=xfs_mount, prefix="test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def no_reflink_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder whose filesystem cannot share blocks: the test's tmp_path on this machine's
    ext4; where that one can reflink, a loop-mounted ext4 image."""
    if not reflink.can_reflink(tmp_path):
        yield tmp_path
        return
    filesystem = reflink.mount_or_skip("ext4")
    yield filesystem.mountpoint
    filesystem.stop()


@pytest.fixture
def rclone_remotes(tmp_path: Path, sshd: SshdServer) -> rclone.Remotes:
    """An rclone config of its own with a local-folder remote `nas` and an SFTP remote `box`
    (and `sftpnas`, a folder on it) on the session's sshd (tests/support/rclone.py). Where
    rclone is missing: skipped, and in CI (CI=true) failed: a tier never silently skipped."""
    reason = rclone.missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return rclone.make_remotes(tmp_path / "rclone", sshd)


@pytest.fixture(scope="session")
def browser() -> Iterator[browsers.Browser]:
    """One headless Chromium (Debian's, through chromedriver and Selenium) for the session,
    started by the first test that asks; skipped, saying why, where it cannot start
    (tests/support/browser.py). Tests share it: each loads the page it needs."""
    started = browsers.browser_or_skip()
    yield started
    started.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly, at the end of the run, that the Docker tier was skipped and why (in CI
    too): a skipped tier is never silent."""
    reasons = set()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        if isinstance(longrepr, tuple) and docker.SKIP_PREFIX in str(longrepr[2]):
            reasons.add(str(longrepr[2]).removeprefix("Skipped: "))
    if reasons:
        where = " IN CI" if os.environ.get("CI") == "true" else ""
        terminalreporter.write_sep("!", f"THE DOCKER TIER DID NOT RUN{where}", red=True)
        for reason in sorted(reasons):
            terminalreporter.write_line(reason, red=True)


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
