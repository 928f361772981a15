"""Bandwidth limits on real transfers through the test sshd: the global cap shared by two
containers at once, and `bwlimit: auto` yielding to a competing flow on an emulated link
(tests/support/wan.py, FIFO: one queue for every connection, as a home router's buffer).

Rates here are bytes counted over time in the test, with generous bounds (a busy machine
only makes a run slower, and these bounds are upper bounds on speed or ratios of rates
measured side by side), never a wall-clock speed target."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.config.bwlimit import parse_bwlimit
from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.progress import Progress
from forge_syncd.library.manifest import Manifest
from forge_syncd.limits.registry import LIMITS
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.connection import connect
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.wan import WanLink, through

MiB = 1024 * 1024


@pytest.fixture
def no_global_cap() -> Iterator[None]:
    """The process's global cap is lifted after the test, whatever it set."""
    yield
    LIMITS.configure(None)


def random_tree(root: Path, files: int, size: int) -> Path:
    root.mkdir(parents=True)
    for index in range(files):
        (root / f"{index:03d}.png").write_bytes(os.urandom(size))
    return root


class Run:
    """One container's sync on a thread of its own, its bytes counted as they come."""

    def __init__(self, container_config: ContainerConfig, tmp: Path) -> None:
        self.config = container_config
        self.tmp = tmp
        self.progress = Progress()
        self.cancel = threading.Event()
        self.ended = 0.0
        self.result = ""
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        manifest = Manifest.open(self.tmp / "state")
        remote = SshTransport(self.config)
        try:
            outcome = sync_container(
                context(
                    self.config, self.tmp / "media", manifest, remote, self.progress, self.cancel
                )
            )
            self.result = outcome.result
        finally:
            self.ended = time.monotonic()
            remote.close()
            manifest.close()


def test_the_global_cap_holds_two_containers_together_and_shares_it_fairly(
    sshd: SshdServer, tmp_path: Path, no_global_cap: None
) -> None:
    """Two containers without limits of their own under `limits: {bwlimit: 4MiB/s}`, each
    fetching 10 MiB at once: together they take no less time than the cap allows (their
    bytes over the time, minus each one's one-second burst, at most 1.3x the cap), and
    neither is starved (the first to finish took at least 60% of the other's time)."""
    cap = 4 * MiB
    LIMITS.configure(parse_bwlimit("4MiB/s"))
    runs = [
        Run(
            make_container(
                sshd, random_tree(tmp_path / n / "remote", 5, 2 * MiB), name=n, watch=False
            ),
            tmp_path / n,
        )
        for n in ("cap-a", "cap-b")
    ]
    started = time.monotonic()
    for run in runs:
        run.thread.start()
    for run in runs:
        run.thread.join(timeout=60)
    assert [run.result for run in runs] == ["success", "success"]
    elapsed = max(run.ended for run in runs) - started
    bursts = 2 * cap / 2  # each bucket starts with one second of its share
    assert (20 * MiB - bursts) / elapsed <= 1.3 * cap
    first, last = sorted(run.ended - started for run in runs)
    assert first >= 0.6 * last


def test_auto_backs_off_when_a_competing_flow_fills_the_link(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A container on `bwlimit: auto` syncing through a 40 ms, 8 MB/s FIFO link: once a
    competing bulk flow (another SSH connection streaming as fast as it can) shares the
    link, the queue it builds raises the round trip past auto_delay and the container's
    rate, measured in the test over its bytes, drops below half of what it was alone
    (measured: to 6%; without a limit it keeps 74%)."""
    with WanLink(sshd.port, rtt_s=0.04, rate_bps=8e6, fifo=True) as link:
        view = through(sshd, link, tmp_path / "known_hosts")
        remote = random_tree(tmp_path / "remote", 50, 2 * MiB)
        container = make_container(
            view, remote, name="auto-a", bwlimit=parse_bwlimit("auto"), watch=False
        )
        run = Run(container, tmp_path)
        run.thread.start()

        def rate_over(seconds: float) -> float:
            before, at = run.progress.bytes_done, time.monotonic()
            time.sleep(seconds)
            return (run.progress.bytes_done - before) / (time.monotonic() - at)

        time.sleep(3)  # the link's and auto's start
        alone = rate_over(2)
        competitor = connect(container.host, container.ssh)
        channel = competitor.transport.open_session()
        channel.exec_command("cat /dev/zero")
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set() and channel.recv(1024 * 1024):
                pass

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            time.sleep(1.5)  # the competitor's queue builds; auto backs off
            shared = rate_over(2)
        finally:
            stop.set()
            competitor.transport.close()
            reader.join(timeout=10)
        run.cancel.set()  # what it fetched is measured: the rest is not needed
        run.thread.join(timeout=60)
    assert run.result in ("success", "cancelled")
    assert alone > 0
    assert shared < 0.5 * alone, (alone, shared)
