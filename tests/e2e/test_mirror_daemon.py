"""The mirror sink in a running forge-syncd and in `forge-syncd --once`: the synced files
reach the rclone remote, `forge-syncctl status` and the control `status` reply show the
mirror's backlog, and /metrics has `forge_sync_mirror_pending_files{sink}`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.rclone import Remotes
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import write_file


def mirrored_config(tmp_path: Path, sshd: SshdServer, remotes: Remotes) -> Path:
    remote = tmp_path / "remote"
    for i in range(3):
        write_file(remote / "day" / f"{i:03d}.png", os.urandom(20_000), 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    text = config.read_text() + (
        "ingest:\n"
        f"  - {{name: nas, type: mirror, remote: 'nas:forge-media',"
        f" rclone_config: {remotes.cli.config}}}\n"
    )
    config.write_text(text)
    return config


def landed(tmp_path: Path) -> dict[str, bytes]:
    """{path: bytes} of the library's files and of the mirror's, for comparison."""
    library = tmp_path / "media"
    return {
        p.relative_to(library).as_posix(): p.read_bytes()
        for p in library.rglob("*.png")
        if p.is_file()
    }


def on_mirror(remotes: Remotes) -> dict[str, bytes]:
    root = remotes.nas_root / "forge-media"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_running_daemon_mirrors_what_lands_and_shows_the_backlog(
    sshd: SshdServer, tmp_path: Path, rclone_remotes: Remotes
) -> None:
    """Three files land and reach `nas:forge-media/forge-a/...` byte for byte; `status
    --json` carries the mirror's fields, `status` says "mirror: all copied (3 files)", and
    the gauge reads 0."""
    config = mirrored_config(tmp_path, sshd, rclone_remotes)
    port = free_port()
    config.write_text(
        config.read_text().replace(
            "metrics: {listen: null}", f"metrics: {{listen: 127.0.0.1:{port}}}"
        )
    )
    daemon = start_daemon(config)
    try:
        wait_until(lambda: len(on_mirror(rclone_remotes)) == 3, timeout=60, what="3 mirrored files")
        assert on_mirror(rclone_remotes) == landed(tmp_path)
        socket = tmp_path / "run" / "control.sock"

        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BIN / "forge-syncctl"), "--socket", str(socket), *args],
                capture_output=True,
                text=True,
                timeout=60,
            )

        wait_until(
            lambda: "mirror: all copied (3 files)" in ctl("status").stdout, what="status line"
        )
        (sink,) = json.loads(ctl("status", "--json").stdout)["sinks"]
        assert sink["mirror"]["pending_files"] == 0 and sink["mirror"]["check"] == "sha256"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
            metrics = page.read().decode()
        assert 'forge_sync_mirror_pending_files{sink="nas"} 0.0' in metrics
        assert 'forge_sync_mirror_failures{sink="nas"} 0.0' in metrics
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


def test_once_leaves_the_mirror_complete(
    sshd: SshdServer, tmp_path: Path, rclone_remotes: Remotes
) -> None:
    """`forge-syncd --once` waits (within its minute for the sinks) for the copies its run
    queued: the mirror holds every landed file when it exits."""
    config = mirrored_config(tmp_path, sshd, rclone_remotes)
    result = forge_syncd("--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert len(on_mirror(rclone_remotes)) == 3
    assert on_mirror(rclone_remotes) == landed(tmp_path)


def test_kill_9_of_the_daemon_mid_copy_resumes_and_ends_the_orphaned_rclone(
    sshd: SshdServer, tmp_path: Path, rclone_remotes: Remotes
) -> None:
    """forge-syncd is killed -9 while rclone copies a large file (bwlimit): the rcd, in its
    own session, outlives it, and the final name holds nothing yet. After a restart that
    rcd is ended (by the PID the sink recorded) and the copy completes byte for byte."""
    remote = tmp_path / "remote"
    write_file(remote / "big.png", os.urandom(8 * 1024 * 1024), 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    config.write_text(
        config.read_text()
        + "ingest:\n"
        + "  - {name: nas, type: mirror, remote: 'nas:forge-media', bwlimit: 512KiB/s,"
        + f" rclone_config: {rclone_remotes.cli.config}}}\n"
    )
    root = rclone_remotes.nas_root / "forge-media" / "forge-a"
    pid_file = tmp_path / "state" / "mirror" / "nas.rcd.pid"
    daemon = start_daemon(config)
    try:
        wait_until(lambda: any(p.stat().st_size for p in root.glob("big*")), what="a copy")
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=20)
    orphan = int(pid_file.read_text())
    assert Path(f"/proc/{orphan}").exists()
    assert not (root / "big.png").exists()
    config.write_text(config.read_text().replace(" bwlimit: 512KiB/s,", ""))
    daemon = start_daemon(config)
    try:
        wait_until(lambda: (root / "big.png").exists(), timeout=60, what="the copy")
        wait_until(lambda: not Path(f"/proc/{orphan}").exists(), what="the orphan gone")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
        if Path(f"/proc/{orphan}").exists():  # a failed run leaves no rclone behind
            os.kill(orphan, signal.SIGKILL)
    assert (root / "big.png").read_bytes() == (remote / "big.png").read_bytes()
    assert not (root / "big.png.forge-sync-partial").exists()


def test_a_library_synced_before_the_mirror_reaches_it_through_backfill(
    sshd: SshdServer, tmp_path: Path, rclone_remotes: Remotes
) -> None:
    """Files synced before the mirror sink was configured: `forge-syncd --backfill` queues
    them in the sink's state (copying nothing itself), and the next `--once` copies them."""
    config = mirrored_config(tmp_path, sshd, rclone_remotes)
    with_mirror = config.read_text()
    config.write_text(with_mirror.split("ingest:\n")[0])
    assert forge_syncd("--once", "--config", str(config)).returncode == 0
    config.write_text(with_mirror)
    result = forge_syncd("--backfill", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert on_mirror(rclone_remotes) == {}
    assert forge_syncd("--once", "--config", str(config)).returncode == 0
    assert on_mirror(rclone_remotes) == landed(tmp_path)
    assert len(landed(tmp_path)) == 3
