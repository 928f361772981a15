"""Media at risk: what exists only on the container (status `remote_only` and the
`forge_sync_remote_only_*` gauges), as full and live runs leave it. Unit tier: a fake
container, a real manifest and library."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from forge_syncd.config.model import ContainerConfig, SyncConfig
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.types import RemoteFile
from forge_syncd.service.metrics import StateCollector
from forge_syncd.service.runner import ContainerRunner
from tests.support.fake_remote import FakeRemote


class Box:
    def __init__(self, tmp: Path, **sync: object) -> None:
        self.remote = FakeRemote()
        self.manifest = Manifest.open(tmp / "state")
        config = ContainerConfig(
            name="box",
            kind="generic",
            host="fake",
            root="/out",
            folders=(),
            sync=SyncConfig(watch=False, **sync),  # type: ignore[arg-type]
        )
        self.runner = ContainerRunner(
            config, os.fsencode(tmp / "media"), self.manifest, remote=self.remote
        )

    def gauges(self) -> dict[str, float]:
        registry = CollectorRegistry()
        registry.register(StateCollector(lambda: [self.runner]))
        return {
            name: registry.get_sample_value(name, {"container": "box"}) or 0.0
            for name in (
                "forge_sync_remote_only_files",
                "forge_sync_remote_only_bytes",
                "forge_sync_remote_only_oldest_seconds",
            )
        }


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    made = Box(tmp_path, settle_s=60.0, max_file_size=1000)
    yield made
    made.manifest.close()


def test_a_full_run_counts_what_it_could_not_land(box: Box) -> None:
    """Fetched files are safe; a file still settling and one too large to sync exist only
    on the container, the oldest aged by its mtime; the gauges say the same."""
    now = int(time.time())
    box.remote.write(b"done.png", b"x" * 100, now - 3600)
    box.remote.write(b"huge.mp4", b"y" * 5000, now - 1800)
    box.remote.write(b"fresh.png", b"z" * 10, now - 5)
    outcome = box.runner.run("sync")
    assert outcome is not None and outcome.files == 1
    summary = box.runner.remote_only.summary()
    gauges = box.gauges()
    later = time.time() + 1  # the oldest's age is 1800 s plus however long this took
    assert (summary["files"], summary["bytes"]) == (2, 5010)
    assert 1800 <= summary["oldest_s"] <= later - (now - 1800)
    assert gauges["forge_sync_remote_only_files"] == 2
    assert gauges["forge_sync_remote_only_bytes"] == 5010
    assert 1800 <= gauges["forge_sync_remote_only_oldest_seconds"] <= later - (now - 1800)


def test_a_failed_fetch_stays_at_risk_and_a_later_success_clears_it(box: Box) -> None:
    now = int(time.time())
    box.remote.write(b"a.png", b"a" * 10, now - 600)
    box.remote.failing.add(b"a.png")
    box.runner.run("sync")
    assert box.runner.remote_only.summary()["files"] == 1
    box.remote.failing.clear()
    box.runner.run("sync")
    assert box.runner.remote_only.summary() == {"files": 0, "bytes": 0, "oldest_s": None}
    assert box.gauges()["forge_sync_remote_only_files"] == 0


def test_an_unreachable_container_keeps_what_was_known(box: Box) -> None:
    """A run that fails before it lists (the container is gone) changes nothing: the media
    the last listing saw only there is exactly what is at risk now."""
    now = int(time.time())
    box.remote.write(b"huge.mp4", b"y" * 5000, now - 600)
    box.runner.run("sync")
    box.remote.listing_error = "connection refused"
    outcome = box.runner.run("sync")
    assert outcome is not None and outcome.result == "failure"
    assert box.runner.remote_only.summary()["files"] == 1


def test_an_unchanged_listing_reused_keeps_the_too_large_files_at_risk(box: Box) -> None:
    now = int(time.time())
    box.remote.write(b"huge.mp4", b"y" * 5000, now - 600)
    box.runner.run("sync")
    outcome = box.runner.run("sync")
    assert outcome is not None and outcome.sync.listing_reused
    assert box.runner.remote_only.summary()["files"] == 1


def test_a_live_run_changes_only_the_files_it_looked_at(box: Box) -> None:
    now = int(time.time())
    box.remote.write(b"huge.mp4", b"y" * 5000, now - 600)
    box.remote.write(b"new.png", b"n" * 10, now - 5)  # settling in the full run
    box.runner.run("sync")
    assert box.runner.remote_only.summary()["files"] == 2
    box.runner.run("sync", changed=[RemoteFile(b"new.png", 10, (now - 5) * 10**9)])
    summary = box.runner.remote_only.summary()
    assert (summary["files"], summary["bytes"]) == (1, 5000)  # huge.mp4 still counted
