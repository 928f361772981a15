"""Issue 23 items 13 and 14, against a real daemon and a real sshd (installed commands as
subprocesses): a manual cleanup honours `cleanup: off`, and only one forge-syncd process
works on a state folder at a time."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file

OLD = 1.7e9  # mtime of every remote file: far past any cleanup's older_than


@dataclass
class Running:
    work: Path
    config: Path
    remotes: dict[str, Path]
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.work / "run" / "control.sock"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def runs(self) -> list[tuple[str, str, str]]:
        """(container, job, run_id) of every run the manifest records."""
        uri = (self.work / "state" / "manifest.sqlite").absolute().as_uri() + "?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=30) as db:
            rows = db.execute("SELECT container, job, run_id FROM runs ORDER BY rowid").fetchall()
        return [(str(c), str(j), str(r)) for c, j, r in rows]


def two_containers(work: Path, sshd: SshdServer) -> tuple[Path, dict[str, Path]]:
    """Write a config with `forge-a` (cleanup enabled, older than 1 h) and `forge-b` (the
    default: cleanup off), each with three old files; return it and the remote folders."""
    remotes = {name: work / f"remote-{name}" for name in ("forge-a", "forge-b")}
    for name, remote in remotes.items():
        for i in range(3):
            write_file(remote / "out" / f"{name}-{i}.png", os.urandom(5000), OLD)
    config = write_config(work, sshd, remotes["forge-a"], interval="1h", watch="false")
    text = config.read_text().replace(
        "    ssh: {port:",
        "    cleanup: {enabled: true, older_than: 1h, interval: 1h}\n    ssh: {port:",
    )
    text += (
        f"  - {{name: forge-b, kind: generic, host: 127.0.0.1, root: {remotes['forge-b']},"
        f" ssh: {{port: {sshd.port}}}}}\n"
    )
    config.write_text(text)
    return config, remotes


@pytest.fixture
def running(sshd: SshdServer, tmp_path: Path) -> Iterator[Running]:
    """A daemon with both containers synced once (each library holds its three files)."""
    config, remotes = two_containers(tmp_path, sshd)
    check = forge_syncd("--config", str(config), "--check-config")
    assert "cleanup off" in check.stdout, check.stdout
    process = start_daemon(config)
    daemon = Running(tmp_path, config, remotes, process)
    try:
        for name in remotes:
            wait_until(
                lambda name=name: len(tree_files(tmp_path / "media" / name)) == 3,  # type: ignore[misc]
                what=f"the first sync of {name}",
            )
        wait_until(
            lambda: (
                sum(job == "sync" for _, job, _ in daemon.runs()) >= 2
                and daemon.ctl("status").returncode == 0
            ),
            what="both first syncs recorded",
        )
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0


def test_manual_cleanup_runs_only_where_cleanup_is_enabled(running: Running) -> None:
    """Regression (issue 23, item 13): `forge-syncctl cleanup` without NAME purged every
    container, even one whose config says `cleanup: off`. Now it purges forge-a only and
    says forge-b was skipped and why; `cleanup forge-b` is refused (exit 1, a clear
    message) and deletes nothing; `--dry-run` on it is allowed and deletes nothing;
    `--force` runs it."""
    all_of_b = tree_files(running.remotes["forge-b"])
    result = running.ctl("cleanup", "--wait")
    assert result.returncode == 0, result.stderr
    assert "forge-a: cleanup success, 3 files," in result.stdout
    assert "forge-b: skipped, cleanup off in its config" in result.stdout
    assert "forge-b: cleanup" not in result.stdout
    assert tree_files(running.remotes["forge-a"]) == {}
    assert tree_files(running.remotes["forge-b"]) == all_of_b

    refused = running.ctl("cleanup", "forge-b", "--wait")
    assert refused.returncode == 1
    assert "cleanup is off in the config of 'forge-b'" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    dry = running.ctl("cleanup", "forge-b", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "forge-b: cleanup dry run: would delete 3 files" in dry.stdout
    assert tree_files(running.remotes["forge-b"]) == all_of_b
    no_name = running.ctl("cleanup", "--force")
    assert no_name.returncode == 2 and "needs the NAME" in no_name.stderr

    forced = running.ctl("cleanup", "forge-b", "--force", "--wait")
    assert forced.returncode == 0, forced.stderr
    assert "forge-b: cleanup success, 3 files," in forced.stdout
    assert tree_files(running.remotes["forge-b"]) == {}
    assert len(tree_files(running.work / "media" / "forge-b")) == 3


def test_once_drain_and_backfill_refuse_while_the_daemon_runs(running: Running) -> None:
    """Regression (issue 23, item 14): `forge-syncd --once` ran beside a live daemon on the
    same state (a second dispatcher, a real cleanup). Now `--once`, `--once --drain
    --container X` and `--backfill` each exit 1 naming the daemon's pid and what to use
    instead, and record nothing in the manifest; a second daemon with another control
    socket refuses too. After `kill -9` of the daemon (its lock file stays behind),
    `--once` runs."""
    pid = running.process.pid
    before = running.runs()
    remote_before = tree_files(running.remotes["forge-a"])
    config = str(running.config)
    for args, advice in (
        (["--once"], "use forge-syncctl sync --wait"),
        (
            ["--once", "--drain", "--container", "forge-a", "--purge"],
            "use forge-syncctl drain forge-a --purge",
        ),
        (["--backfill"], "stop it"),
    ):
        result = forge_syncd("--config", config, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"forge-syncd (pid {pid}) is running: {advice}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    other_socket = running.work / "other.yaml"
    other_socket.write_text(
        running.config.read_text().replace(
            str(running.socket), str(running.work / "run" / "other.sock")
        )
    )
    second = forge_syncd("--config", str(other_socket))
    assert second.returncode == 1
    assert f"forge-syncd (pid {pid}) is already running" in second.stderr
    assert not (running.work / "run" / "other.sock").exists()
    assert running.runs() == before
    assert tree_files(running.remotes["forge-a"]) == remote_before

    lock = running.work / "state" / "forge-syncd.lock"
    assert lock.read_text().split() == [str(pid), "daemon"]
    running.process.send_signal(signal.SIGKILL)
    running.process.wait(timeout=20)
    assert lock.exists()
    once = forge_syncd("--config", config, "--once")
    assert once.returncode == 0, once.stderr
    assert "forge-a: sync success" in once.stdout
    assert "forge-a: cleanup success, 3 files," in once.stdout
    assert len(running.runs()) > len(before)
