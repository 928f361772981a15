"""The installed daemon's bandwidth limits: a reload that changes `sync.bwlimit` and adds
`limits: {bwlimit}` applies to the transfer that is running (no restart, the same run), and
`forge-syncctl status` shows each limit as it is now."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from forge_syncd.control.client import ControlClient
from tests.support.cli import BIN, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import write_file

MiB = 1024 * 1024


def test_a_reload_changes_the_limit_of_the_running_transfer_and_status_shows_it(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A sync held at `bwlimit: 1MiB/s` is running; the config changes to 64MiB/s with a
    global cap of 2MiB/s and is reloaded: the same run goes on (one run, `success`), and
    `status` says the new settings and the limit now (the cap's share, 2 MiB/s), in JSON
    and in the line under the table."""
    remote = tmp_path / "remote"
    write_file(remote / "day" / "big.png", os.urandom(6 * MiB), 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h", watch="false", bwlimit="1MiB/s")
    process = start_daemon(config)
    sock = tmp_path / "run" / "control.sock"

    def status() -> dict[str, Any]:
        with ControlClient(sock) as client:
            result: dict[str, Any] = client.call("status", {}, timeout=30)
        return result

    try:
        wait_until(sock.exists, what="the control socket")
        wait_until(lambda: status()["containers"][0]["progress"] is not None, what="the sync")
        before = status()
        assert before["containers"][0]["bwlimit"]["setting"] == "1MiB/s"
        assert before["containers"][0]["bwlimit"]["rate_bps"] == MiB
        assert before["limits"] == {"bwlimit": {"setting": None, "rate_bps": None}}
        run_id = before["containers"][0]["progress"]["run_id"]
        text = config.read_text().replace("bwlimit: 1MiB/s", "bwlimit: 64MiB/s")
        config.write_text(text + "limits: {bwlimit: 2MiB/s}\n")
        ctl = [str(BIN / "forge-syncctl"), "--socket", str(sock)]
        assert subprocess.run([*ctl, "reload"], capture_output=True, timeout=30).returncode == 0
        after = status()
        assert after["containers"][0]["bwlimit"]["setting"] == "64MiB/s"
        assert after["containers"][0]["bwlimit"]["rate_bps"] == 2 * MiB
        assert after["limits"] == {"bwlimit": {"setting": "2MiB/s", "rate_bps": 2 * MiB}}
        shown = subprocess.run([*ctl, "status"], capture_output=True, text=True, timeout=30)
        assert "bwlimit: all containers 2.0 MiB/s (2MiB/s); forge-a 2.0 MiB/s (64MiB/s)" in (
            shown.stdout
        )
        with ControlClient(sock) as client:
            history = client.call("history", {"container": "forge-a", "limit": 5}, timeout=30)

        def finished() -> list[dict[str, Any]]:
            with ControlClient(sock) as client:
                runs: list[dict[str, Any]] = client.call(
                    "history", {"container": "forge-a", "limit": 5}, timeout=30
                )["runs"]
            return [r for r in runs if r["finished_at"] is not None]

        wait_until(lambda: bool(finished()), timeout=60, what="the run to end")
        assert [(r["run_id"], r["result"]) for r in finished()] == [(run_id, "success")]
        assert history["runs"][0]["run_id"] == run_id
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
