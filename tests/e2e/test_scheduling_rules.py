"""The daemon's scheduling rules, against the installed daemon and a real sshd: backoff of a
failing container, coalescing of a run that outlasts its interval, sync and cleanup of one
container excluding each other, the cross-process run lock, and the log reopened on SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.control.client import ControlClient
from forge_syncd.jobs.record import container_lock
from forge_syncd.service.runner import backoff_s
from tests.support.cli import forge_syncd, write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import tree_files, write_file


def status_of(socket_path: Path) -> dict[str, Any]:
    with ControlClient(socket_path) as client:
        (container,) = client.call("status")["containers"]
    return dict(container)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


def events(log: Path, name: str) -> list[dict[str, Any]]:
    return [record for record in read_log(log) if record["event"] == name]


def test_backoff_doubles_from_30_s_and_stops_at_an_hour() -> None:
    """Consecutive failures wait 30 s, 1 min, 2 min, ... and never more than 1 h."""
    assert [backoff_s(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert backoff_s(50) == 3600


def test_a_failing_container_waits_its_backoff_not_its_interval(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A container whose port is closed, scheduled every second, is not retried every
    second: after its failure the next sync is at least the 30 s backoff away, and it shows
    as `unreachable`."""
    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1s")
    config.write_text(config.read_text().replace(f"port: {sshd.port}", f"port: {free_port()}"))
    socket_path = tmp_path / "run" / "control.sock"
    daemon = start_daemon(config)
    try:
        wait_until(lambda: socket_path.exists(), what="the control socket")
        wait_until(lambda: status_of(socket_path)["last_sync"] is not None, what="a first try")
        status = status_of(socket_path)
        assert status["state"] == "unreachable"
        assert status["last_sync"]["result"] == "failure"
        wait_s = (
            parse_ts(status["next_sync_at"]) - parse_ts(status["last_sync"]["finished_at"])
        ).total_seconds()
        assert wait_s >= backoff_s(1) - 1, status
    finally:
        stop(daemon)
    assert len(events(tmp_path / "log" / "forge-syncd.jsonl", "sync_started")) == 1


@pytest.fixture
def slow_remote(tmp_path: Path) -> Path:
    """A remote whose sync takes a few seconds under a 1 MiB/s bwlimit."""
    remote = tmp_path / "remote"
    write_file(remote / "big.mp4", os.urandom(3 * 1024 * 1024), 1.7e9)
    write_file(remote / "small.png", b"png", 1.7e9)
    return remote


def test_a_run_that_outlasts_its_interval_is_not_started_twice(
    sshd: SshdServer, tmp_path: Path, slow_remote: Path
) -> None:
    """Sync every second, a sync that takes seconds: while it runs no second sync of that
    container starts; the next one starts only after it finished."""
    config = write_config(tmp_path, sshd, slow_remote, interval="1s", bwlimit="1MiB/s")
    log = tmp_path / "log" / "forge-syncd.jsonl"
    daemon = start_daemon(config)
    try:
        wait_until(lambda: len(events(log, "sync_finished")) >= 2, timeout=60, what="2 syncs")
    finally:
        stop(daemon)
    records = [r["event"] for r in read_log(log) if r["event"] in ("sync_started", "sync_finished")]
    assert records[:4] == ["sync_started", "sync_finished", "sync_started", "sync_finished"]
    assert tree_files(tmp_path / "media" / "forge-a") == tree_files(slow_remote)


def test_sync_and_cleanup_of_one_container_exclude_each_other(
    sshd: SshdServer, tmp_path: Path, slow_remote: Path
) -> None:
    """A cleanup requested while the container's sync transfers starts only after that
    sync has finished."""
    config = write_config(tmp_path, sshd, slow_remote, interval="1h", bwlimit="1MiB/s")
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:",
            "    cleanup: {enabled: true, older_than: 1h, interval: 1h, dry_run: true}\n"
            "    ssh: {port:",
        )
    )
    log = tmp_path / "log" / "forge-syncd.jsonl"
    socket_path = tmp_path / "run" / "control.sock"
    daemon = start_daemon(config)
    try:
        wait_until(lambda: socket_path.exists(), what="the control socket")
        wait_until(lambda: status_of(socket_path)["state"] == "syncing", what="the sync")
        with ControlClient(socket_path) as client:
            client.call("cleanup", {"containers": ["forge-a"]})
        wait_until(lambda: events(log, "cleanup_finished"), timeout=60, what="the cleanup")
    finally:
        stop(daemon)
    order = [r["event"] for r in read_log(log) if r["event"].split("_")[0] in ("sync", "cleanup")]
    assert order.index("cleanup_started") > order.index("sync_finished"), order


def test_a_second_process_cannot_run_a_container_that_is_running(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """While another process holds a container's run lock, `--once` for it fails as busy
    and touches nothing; once the lock is free it syncs."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a", 1.7e9)
    config = write_config(tmp_path, sshd, remote)
    state = tmp_path / "state"
    state.mkdir()
    with container_lock(state, "forge-a"):
        busy = forge_syncd("--once", "--config", str(config))
    assert busy.returncode == 1, busy.stderr
    assert "another run of forge-a is in progress" in busy.stdout + busy.stderr
    assert tree_files(tmp_path / "media" / "forge-a") == {}
    free = forge_syncd("--once", "--config", str(config))
    assert free.returncode == 0, free.stderr
    assert tree_files(tmp_path / "media" / "forge-a") == tree_files(remote)


def test_sighup_reopens_the_log_file(sshd: SshdServer, tmp_path: Path) -> None:
    """logrotate moves the log away and sends SIGHUP: the daemon writes on in a new file at
    the configured path, and nothing more goes to the moved one."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a", 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    log = tmp_path / "log" / "forge-syncd.jsonl"
    rotated = log.with_suffix(".jsonl.1")
    daemon = start_daemon(config)
    try:
        wait_until(lambda: events(log, "sync_finished"), what="the first sync")
        log.rename(rotated)
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: events(log, "config_reloaded"), what="a record in the new file")
        moved = rotated.read_bytes()
    finally:
        stop(daemon)
    assert b"config_reloaded" not in moved
    assert rotated.read_bytes() == moved
    assert events(log, "daemon_stopping")
