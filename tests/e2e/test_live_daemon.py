"""Live mode in the real daemon: `status` and `/metrics` show the watcher, and a new file
reaches the library with an hour-long interval (no poll could have fetched it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_metrics import try_samples
from tests.support.cli import BIN, write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import tree_files


@pytest.fixture
def daemon(sshd: SshdServer, tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    remote = tmp_path / "remote"
    remote.mkdir()
    config = write_config(tmp_path, sshd, remote, interval="1h", settle="5s")
    port = free_port()
    config.write_text(
        config.read_text().replace(
            "metrics: {listen: null}", f"metrics: {{listen: 127.0.0.1:{port}}}"
        )
    )
    process = start_daemon(config)
    yield tmp_path, port, remote
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def status(work: Path) -> dict[str, object]:
    result = subprocess.run(
        [
            str(BIN / "forge-syncctl"),
            "--socket",
            str(work / "run" / "control.sock"),
            "status",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(result.stdout)["containers"][0] if result.returncode == 0 else {}


def test_the_daemon_watches_and_syncs_a_new_file_without_polling(
    daemon: tuple[Path, int, Path],
) -> None:
    work, port, remote = daemon
    wait_until(lambda: status(work).get("watch") == "watching", 60, "status watch: watching")
    active = ("forge_sync_watch_active", (("container", "forge-a"),))
    wait_until(lambda: try_samples(port).get(active) == 1, 30, "forge_sync_watch_active 1")
    wait_until(lambda: status(work).get("last_sync") is not None, 60, "the first sync")
    data = os.urandom(150_000)
    (remote / "day").mkdir()
    temp = remote / "day" / "00001.png.tmp"
    temp.write_bytes(data)
    os.replace(temp, remote / "day" / "00001.png")
    local = work / "media" / "forge-a" / "day" / "00001.png"
    wait_until(lambda: local.exists() and local.read_bytes() == data, 30, "the new file")
    assert list(tree_files(work / "media" / "forge-a")) == [b"day/00001.png"]
    events = [r["event"] for r in read_log(work / "log" / "forge-syncd.jsonl")]
    assert "watch_started" in events
    assert "sync_started" in events
