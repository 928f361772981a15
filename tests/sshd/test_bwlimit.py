"""Bandwidth limits on real transfers through the test sshd: the global cap shared by two
containers at once, and `bwlimit: auto` yielding to a competing flow on an emulated link
(tests/support/wan.py, FIFO: one queue for every connection, as a home router's buffer).

Rates here are bytes counted over time in the test, with generous bounds (a busy machine
only makes a run slower, and these bounds are upper bounds on speed or ratios of rates
measured side by side), never a wall-clock speed target."""

from __future__ import annotations

import os
import statistics
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
from forge_syncd.transports.ssh.ping import round_trip
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


def queueing_delay(sshd: SshdServer, tmp_path: Path, bwlimit: object) -> float:
    """Sync a tree through a 40 ms, 8 MB/s FIFO link with `bwlimit` and return the median
    round trip another connection through the same link sees meanwhile, less the one it
    saw before: the queue this container's transfer builds in front of other traffic."""
    with WanLink(sshd.port, rtt_s=0.04, rate_bps=8e6, fifo=True) as link:
        view = through(sshd, link, tmp_path / "known_hosts")
        remote = random_tree(tmp_path / "remote", 50, 2 * MiB)
        container = make_container(view, remote, name="auto-a", bwlimit=bwlimit, watch=False)
        other = connect(container.host, container.ssh)
        try:
            base = statistics.median(round_trip(other) or 0.0 for _ in range(5))
            run = Run(container, tmp_path)
            run.thread.start()
            time.sleep(3)  # the link's and auto's start
            during = []
            for _ in range(20):
                during.append(round_trip(other) or 0.0)
                time.sleep(0.05)
            run.cancel.set()  # what it fetched is measured: the rest is not needed
            run.thread.join(timeout=60)
        finally:
            other.transport.close()
    assert run.result in ("success", "cancelled") and run.progress.bytes_done > 0
    return statistics.median(during) - base


def test_auto_keeps_the_queue_it_builds_short(sshd: SshdServer, tmp_path: Path) -> None:
    """`bwlimit: auto` holds the queueing delay its transfer adds in front of other
    traffic on a shared FIFO link near `auto_delay` (25 ms): measured in the test as the
    round trip of another SSH connection through the same emulated link, it adds less than
    half of what the same sync without a limit adds (which fills the link's queue: several
    hundred ms). A transfer that does not pace itself fails this."""
    unlimited = queueing_delay(sshd, tmp_path / "none", None)
    auto = queueing_delay(sshd, tmp_path / "auto", parse_bwlimit("auto"))
    assert auto < 0.5 * unlimited, (auto, unlimited)
