"""Network faults against the real daemon: the container's sshd killed mid-transfer, and a
container whose network path comes and goes, while another container keeps syncing.

(A connection that stalls without closing is tests/test_stall.py.) With FORGE_RELIABILITY_DIR
set, each scenario's outcome is added to `network_faults.json` there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.control.client import ControlClient
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.runner import ContainerRunner
from tests.conftest import make_container
from tests.support.cli import write_config
from tests.support.daemon import wait_until
from tests.support.faults import (
    FlappingProxy,
    LogTail,
    kill_sshd_hard,
    restart_sshd_same_port,
    spawn_daemon,
    temp_files,
    write_reliability,
)
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import tree_files, write_file

KNOWN_KINDS = {"connect", "auth", "host_key", "listing", "transfer", "verify", "remote"}


def add_container(config: Path, name: str, remote: Path, sshd: SshdServer, known: Path) -> None:
    """Append a generic container reaching `remote` through `sshd`'s keys (port in `known`)."""
    port = known.read_text().split("]:", 1)[1].split()[0]
    config.write_text(
        config.read_text()
        + f"  - {{name: {name}, kind: generic, host: 127.0.0.1, root: {remote},\n"
        + f"     ssh: {{port: {port}, identity_file: {sshd.client_key}, known_hosts: {known}}}}}\n"
    )


def with_metrics(config: Path) -> int:
    port = free_port()
    config.write_text(
        config.read_text().replace(
            "metrics: {listen: null}", f"metrics: {{listen: 127.0.0.1:{port}}}"
        )
    )
    return port


def scrape(port: int, name: str, container: str) -> float | None:
    """Return the value of metric `name` for `container` from the daemon's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{container="{container}"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


def record_scenario(scenario: str, outcome: str, others_synced: bool) -> None:
    """Add one scenario's entry to network_faults.json (another scenario may be there)."""
    folder = os.environ.get("FORGE_RELIABILITY_DIR")
    entries: list[dict[str, Any]] = []
    if folder and Path(folder, "network_faults.json").exists():
        entries = json.loads(Path(folder, "network_faults.json").read_text())
    entries = [e for e in entries if e.get("scenario") != scenario]
    entries.append(
        {"scenario": scenario, "outcome": outcome, "other_containers_synced": others_synced}
    )
    write_reliability("network_faults.json", entries)


def final_names_whole(library: Path, remote: Path) -> list[bytes]:
    """Return local files under a final name whose bytes differ from the remote's."""
    want = {p: v[0] for p, v in tree_files(remote).items()}
    return [
        path
        for path, (data, _) in tree_files(library).items()
        if not path.rsplit(b"/", 1)[-1].startswith(b".fs-") and want.get(path) != data
    ]


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


class Generator:
    """Writes a new file into a steady container's tree now and then; reports what arrived."""

    def __init__(self, remote: Path, library: Path) -> None:
        self.remote, self.library, self.count = remote, library, 0

    def add(self) -> None:
        write_file(self.remote / "new" / f"{self.count:03d}.png", os.urandom(3000), 1.7e9)
        self.count += 1

    def all_arrived(self) -> bool:
        return len(list((self.library / "new").glob("*.png"))) == self.count


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sshd_killed_mid_transfer_fails_the_run_cleanly_and_the_next_run_completes(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """The container's sshd (and its sessions) is SIGKILLed while a big file transfers under
    bwlimit: the run fails as `connect` with no traceback, nothing partial lies under a
    final name, status shows `unreachable` and container_up 0; the other container keeps getting
    new files; after sshd is back on the same port, the daemon's next scheduled run (after
    its backoff) completes the tree and leaves no temporary file."""
    private = SshdServer(tmp_path / "sshd-a").start()
    remote_a, remote_b = tmp_path / "remote-a", tmp_path / "remote-b"
    # Bigger than what the SSH window and socket buffers can hold in flight.
    write_file(remote_a / "video.mp4", os.urandom(24_000_000), 1.7e9)
    for i in range(5):
        write_file(remote_a / "small" / f"{i}.png", os.urandom(20_000), 1.7e9)
    config = write_config(tmp_path, private, remote_a, interval="1s", bwlimit="4MiB/s")
    add_container(config, "forge-b", remote_b, sshd, sshd.known_hosts)
    metrics = with_metrics(config)
    library_a = tmp_path / "media" / "forge-a"
    steady = Generator(remote_b, tmp_path / "media" / "forge-b")
    steady.add()
    log = LogTail(tmp_path / "log" / "forge-syncd.jsonl")
    stderr = tmp_path / "daemon.stderr"
    daemon = spawn_daemon(config, stderr)
    outcome = "failed"
    try:
        wait_until(lambda: temp_files(library_a) != [], timeout=30, what="a transfer under way")
        time.sleep(0.5)
        kill_sshd_hard(private)

        def failed() -> list[dict[str, Any]]:
            return [
                r
                for r in log.since_mark()
                if r.get("event") == "sync_failed" and r.get("container") == "forge-a"
            ]

        wait_until(lambda: bool(failed()), timeout=60, what="forge-a's run to fail")
        failure = failed()[0]
        assert failure["kind"] == "connect", failure  # the retry found the port closed
        assert final_names_whole(library_a, remote_a) == []
        assert not (library_a / "video.mp4").exists()

        def status_a() -> dict[str, Any]:
            with ControlClient(tmp_path / "run" / "control.sock") as client:
                found = {c["name"]: c for c in client.call("status")["containers"]}
            return dict(found["forge-a"])

        # Between retries (a retry in flight shows `syncing`): interval 1 s, so poll.
        wait_until(lambda: status_a()["state"] == "unreachable", 30, "status unreachable")
        assert status_a()["last_sync"]["result"] == "failure"
        assert scrape(metrics, "forge_sync_container_up", "forge-a") == 0.0
        restart_sshd_same_port(private)
        for _ in range(3):  # the other container keeps syncing meanwhile
            steady.add()
            wait_until(steady.all_arrived, timeout=30, what="forge-b's new file")
        wait_until(
            lambda: tree_files(library_a) == tree_files(remote_a),
            timeout=120,
            what="forge-a's next scheduled run to complete the tree",
        )
        assert temp_files(library_a) == []
        outcome = "recovered"
    finally:
        record_scenario("sshd_killed_mid_transfer", outcome, steady.all_arrived())
        stop(daemon)
        private.stop()
    assert b"Traceback" not in stderr.read_bytes()
    runs = [r for r in log.since_mark() if r.get("event") == "sync_finished"]
    assert any(r["container"] == "forge-a" and r["files"] > 0 for r in runs)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_flapping_container_never_leaves_partial_files_and_others_keep_syncing(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A container reached through a proxy that alternately drops every connection and
    refuses new ones, asked to sync again and again: each run succeeds or fails with a
    classified error (no traceback, the daemon stays up), nothing partial appears under a
    final name; a steady container on a healthy path receives every new file meanwhile;
    once the path stays up, a sync completes the flapping container's tree."""
    remote_f, remote_s = tmp_path / "remote-flappy", tmp_path / "remote-steady"
    write_file(remote_f / "clip.mp4", os.urandom(3_000_000), 1.7e9)
    for i in range(20):
        write_file(remote_f / "day" / f"{i:02d}.png", os.urandom(30_000), 1.7e9)
    proxy = FlappingProxy(sshd.port)
    known = tmp_path / "known_hosts"
    known.write_text(sshd.host_key_line().replace(f":{sshd.port} ", f":{proxy.port} "))
    config = write_config(tmp_path, sshd, remote_s, interval="1s", bwlimit="2MiB/s")
    config.write_text(config.read_text().replace("  - name: forge-a", "  - name: steady"))
    add_container(config, "flappy", remote_f, sshd, known)
    library_f = tmp_path / "media" / "flappy"
    steady = Generator(remote_s, tmp_path / "media" / "steady")
    log = LogTail(tmp_path / "log" / "forge-syncd.jsonl")
    stderr = tmp_path / "daemon.stderr"
    daemon = spawn_daemon(config, stderr)
    outcome = "failed"
    partial: list[bytes] = []
    try:
        wait_until(lambda: (tmp_path / "run" / "control.sock").exists(), what="the socket")
        with ControlClient(tmp_path / "run" / "control.sock") as client:
            for flap in range(6):
                proxy.up()
                client.call("sync", {"containers": ["flappy"]})
                steady.add()
                time.sleep(0.6 + 0.2 * (flap % 3))
                proxy.down()
                partial += final_names_whole(library_f, remote_f)
                time.sleep(0.4)
            assert daemon.poll() is None, "the daemon died while the container flapped"
            wait_until(steady.all_arrived, timeout=30, what="every new file of steady")
            proxy.up()
            runs = client.call("sync", {"containers": ["flappy"], "wait": True}, timeout=120)
        assert runs["runs"][0]["result"] == "success", runs
        assert tree_files(library_f) == tree_files(remote_f)
        assert temp_files(library_f) == []
        outcome = "recovered"
    finally:
        record_scenario("flapping_container", outcome, steady.all_arrived())
        stop(daemon)
        proxy.close()
    assert partial == []
    records = log.since_mark()
    flappy = [r for r in records if r.get("container") == "flappy"]
    failures = [r for r in flappy if r.get("event") == "sync_failed"]
    assert failures, "no run of the flapping container ever failed: the flaps missed"
    for failure in failures:
        assert failure["kind"] and set(failure["kind"].split(",")) <= KNOWN_KINDS, failure
    steady_runs = [
        r for r in records if r.get("container") == "steady" and r.get("event") == "sync_failed"
    ]
    assert steady_runs == [], "the steady container failed while another one flapped"
    assert proxy.connections >= 3
    assert b"Traceback" not in stderr.read_bytes()


def test_a_refused_reconnect_during_a_transfer_counts_as_unreachable(tmp_path: Path) -> None:
    """The container's sshd dies mid-transfer; the run's retry of the undelivered files
    finds the port closed. The run fails as `connect` (not as a `transfer` error), so the
    container shows as unreachable and forge_sync_container_up drops to 0."""
    private = SshdServer(tmp_path / "sshd").start()
    remote = tmp_path / "remote"
    # Bigger than what the SSH window and socket buffers can hold in flight.
    write_file(remote / "video.mp4", os.urandom(24_000_000), 1.7e9)
    container = make_container(private, remote, bwlimit=4 * 1024 * 1024)
    library = tmp_path / "media" / "forge-a"
    runner = ContainerRunner(
        container, os.fsencode(tmp_path / "media"), Manifest.open(tmp_path / "state")
    )

    def kill_when_transferring() -> None:
        wait_until(lambda: temp_files(library) != [], timeout=30, what="a transfer")
        kill_sshd_hard(private)

    killer = threading.Thread(target=kill_when_transferring)
    killer.start()
    try:
        outcome = runner.run("sync")
    finally:
        killer.join()
        runner.close()
        private.stop()
    assert outcome is not None and outcome.result == "failure", outcome
    assert outcome.error_kinds == {"connect"}, outcome
    assert runner.state == "unreachable" and runner.reachable is False
    assert final_names_whole(library, remote) == []
