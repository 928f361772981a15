"""The daemon under a real NOTIFY_SOCKET, against a real sshd: notify, schedule, reload, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from forge_syncd.cli.syncd import prepare_directories
from forge_syncd.config import load_config
from forge_syncd.service.daemon import STOP_TIMEOUT_S, Daemon
from tests.support.cli import write_config
from tests.support.daemon import NotifySocket, read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


def add_container(config: Path, name: str, remote: Path, port: int) -> None:
    config.write_text(
        config.read_text()
        + f"  - {{name: {name}, kind: generic, host: 127.0.0.1, root: {remote}, ssh: {{port: {port}}}}}\n"
    )


@pytest.fixture
def notify(tmp_path: Path) -> NotifySocket:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock  # type: ignore[misc]
    sock.close()


def test_notify_protocol_ready_status_watchdog_reload_stop(
    sshd: SshdServer, tmp_path: Path, notify: NotifySocket
) -> None:
    """READY=1 with STATUS=, periodic WATCHDOG=1, RELOADING=1 then READY=1 around SIGHUP,
    STOPPING=1 on SIGTERM, exit 0."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"png", 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1s")
    daemon = start_daemon(config, notify, watchdog_usec=1_000_000)
    try:
        ready = notify.wait_for("READY=1")
        assert any(m.startswith("STATUS=") for m in notify.messages)
        first = notify.wait_for("WATCHDOG=1", after=ready)
        notify.wait_for("WATCHDOG=1", after=first + 1)
        daemon.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING=1", after=ready + 1)
        notify.wait_for("READY=1", after=reloading)
        daemon.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert daemon.wait(timeout=15) == 0
    finally:
        daemon.kill()
    events = [r["event"] for r in read_log(tmp_path / "log" / "forge-syncd.jsonl")]
    assert "daemon_started" in events and "config_reloaded" in events
    assert "daemon_stopping" in events


def test_watchdog_pings_stop_when_the_scheduler_is_blocked(
    sshd: SshdServer, tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WATCHDOG=1 proves the scheduler dispatches: once it stops dispatching, the pings stop
    (systemd then kills and restarts a wedged daemon)."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    config_path = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h")
    (tmp_path / "remote").mkdir()
    config = load_config(config_path)
    prepare_directories(config)
    daemon = Daemon(config_path, config)
    saved = {s: signal.getsignal(s) for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    counts: dict[str, int] = {}

    def drive() -> None:
        notify.wait_for("READY=1")
        time.sleep(2)
        counts["healthy"] = notify.poll().count("WATCHDOG=1")
        daemon.scheduler._scheduler.pause()  # wedge: no job, not even the heartbeat, runs
        time.sleep(2.5)  # the last heartbeat goes stale
        before = notify.poll().count("WATCHDOG=1")
        time.sleep(2)
        counts["blocked"] = notify.poll().count("WATCHDOG=1") - before
        daemon.signals.put(signal.SIGTERM)

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert daemon.run() == 0
    finally:
        driver.join()
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert counts["healthy"] >= 2
    assert counts["blocked"] == 0


def test_new_remote_files_arrive_on_schedule(sshd: SshdServer, tmp_path: Path) -> None:
    """The first sync runs right after start; files added later arrive on the next runs."""
    remote = tmp_path / "remote"
    write_file(remote / "first.png", b"one", 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1s")
    library = tmp_path / "media" / "forge-a"
    daemon = start_daemon(config)
    try:
        wait_until(lambda: (library / "first.png").exists(), what="the first sync")
        write_file(remote / "later" / "second.png", b"two", 1.7e9)
        wait_until(lambda: (library / "later" / "second.png").exists(), what="a later sync")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    assert tree_files(library) == tree_files(remote)


def test_reload_adds_removes_and_survives_a_bad_config(
    sshd: SshdServer, tmp_path: Path, notify: NotifySocket
) -> None:
    """SIGHUP: an added container starts syncing, a removed one stops, an invalid config is
    logged and the old one keeps running."""
    remote_a, remote_b = tmp_path / "a", tmp_path / "b"
    write_file(remote_a / "a1.png", b"a1", 1.7e9)
    write_file(remote_b / "b1.png", b"b1", 1.7e9)
    config = write_config(tmp_path, sshd, remote_a, interval="1s")
    media = tmp_path / "media"
    log = tmp_path / "log" / "forge-syncd.jsonl"
    daemon = start_daemon(config, notify)
    try:
        wait_until(lambda: (media / "forge-a" / "a1.png").exists(), what="forge-a")
        good = config.read_text()
        add_container(config, "comfy-1", remote_b, sshd.port)
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: (media / "comfy-1" / "b1.png").exists(), what="added container")

        config.write_text(config.read_text().replace("kind: generic", "kind: genric", 1))
        daemon.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any(r["event"] == "config_reload_failed" for r in read_log(log)),
            what="reload failure logged",
        )
        write_file(remote_b / "b2.png", b"b2", 1.7e9)
        wait_until(lambda: (media / "comfy-1" / "b2.png").exists(), what="old config running")

        config.write_text(good)
        daemon.send_signal(signal.SIGHUP)
        wait_until(
            lambda: any(
                r["event"] == "config_reloaded" and r.get("removed") == ["comfy-1"]
                for r in read_log(log)
            ),
            what="removal",
        )
        write_file(remote_b / "b3.png", b"b3", 1.7e9)
        write_file(remote_a / "a2.png", b"a2", 1.7e9)
        wait_until(lambda: (media / "forge-a" / "a2.png").exists(), what="forge-a goes on")
        time.sleep(2)  # two more intervals: a removed container must not sync again
        assert not (media / "comfy-1" / "b3.png").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0


MiB = 1024 * 1024


def library_bytes(library: Path) -> int:
    """Return the bytes under `library`, partial files included."""
    return sum(p.stat().st_size for p in library.rglob("*") if p.is_file())


def test_sigterm_mid_transfer_exits_0_and_next_start_completes(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """SIGTERM while files are in flight: the daemon exits 0, its jobs ended (not left
    running), without finishing the transfers: at 1 MiB/s, at most its stop deadline's
    worth of bytes (10 s, + 2 MiB of burst) lands after the signal, and 24 MB would have
    needed 23 s, so not every file is complete. No partial file under a final name; the
    next start completes the tree. (Bytes, not seconds: a busy machine lands fewer.)"""
    remote = tmp_path / "remote"
    for i in range(6):
        write_file(remote / f"video{i}.mp4", os.urandom(4_000_000), 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h", bwlimit="1MiB/s", transfers=2)
    library = tmp_path / "media" / "forge-a"
    daemon = start_daemon(config)
    wait_until(
        lambda: any(p.name.endswith(".part") for p in library.glob(".*")),
        what="a transfer in flight",
    )
    daemon.send_signal(signal.SIGTERM)
    at_signal = library_bytes(library)
    assert daemon.wait(timeout=60) == 0
    after = library_bytes(library)
    assert after - at_signal <= STOP_TIMEOUT_S * MiB + 2 * MiB
    (stopped,) = [
        r
        for r in read_log(tmp_path / "log" / "forge-syncd.jsonl")
        if r["event"] == "daemon_stopped"
    ]
    assert stopped["busy"] is False
    want = tree_files(remote)
    for path, value in tree_files(library).items():
        assert value == want[path]
    assert len(tree_files(library)) < len(want)
    fast = write_config(tmp_path, sshd, remote, interval="1h")
    daemon = start_daemon(fast)
    try:
        wait_until(lambda: tree_files(library) == want, what="the rest after restart")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    assert not [p for p in library.rglob(".*") if p.name.endswith(".part")]


def test_unreachable_container_does_not_delay_others(sshd: SshdServer, tmp_path: Path) -> None:
    """A container whose address never answers SSH is retried alone; the others sync."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a", 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1s")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        config.write_text(config.read_text().replace("connect_timeout: 5s", "connect_timeout: 30s"))
        add_container(config, "stuck", tmp_path / "nowhere", silent.getsockname()[1])
        daemon = start_daemon(config)
        try:
            wait_until(
                lambda: (tmp_path / "media" / "forge-a" / "a.png").exists(),
                timeout=10,
                what="the healthy container while the other hangs",
            )
            write_file(remote / "b.png", b"b", 1.7e9)
            wait_until(
                lambda: (tmp_path / "media" / "forge-a" / "b.png").exists(),
                timeout=10,
                what="the next run of the healthy container",
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=20) == 0


def test_daemon_refuses_unwritable_state_dir(sshd: SshdServer, tmp_path: Path) -> None:
    """A state_dir that exists but is a file is a clear start-up error, exit 1."""
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    (tmp_path / "state").write_text("not a folder")
    result = subprocess.run(
        [str(Path(os.sys.executable).parent / "forge-syncd"), "--config", str(config)],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr
