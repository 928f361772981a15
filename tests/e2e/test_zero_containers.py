"""A daemon with no container is healthy (a fresh install), and drop-ins bring containers in
on reload: the installed forge-syncd and forge-syncctl, a real sd_notify socket, a real sshd."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.support.cli import BIN
from tests.support.daemon import NotifySocket, start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file

NO_CONTAINERS = "no containers configured: forge-syncctl add NAME ssh://user@host:port"


def config_without_containers(work: Path, sshd: SshdServer) -> Path:
    """Write a config with defaults reaching `sshd` and no container; return its path."""
    path = work / "etc" / "forge-sync.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{user: {sshd.user}, identity_file: {sshd.client_key}, known_hosts: {sshd.known_hosts},
         port: {sshd.port}, connect_timeout: 5s}}
  sync: {{settle: 0s, interval: 1h, watch: false}}
containers: []
"""
    )
    return path


def ctl(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(work / "run" / "control.sock"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_containers_is_ready_and_says_how_to_add_one_then_dropins_add_them(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """With no container the daemon sends READY=1 and exactly STATUS=<NO_CONTAINERS>;
    `forge-syncctl status` prints that sentence (exit 0) and `--json` has no containers.
    An admin's drop-in then brings a container in on `forge-syncctl reload` (status shows
    it, its files land); a daemon-written drop-in defining the same name is refused, naming
    both files and lines, and the running config stays; removed, the reload is clean."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", os.urandom(5000), 1.7e9)
    config = config_without_containers(tmp_path, sshd)
    notify = NotifySocket(tmp_path / "notify.sock")
    process = start_daemon(config, notify)
    try:
        ready = notify.wait_for("READY=1")
        assert notify.messages[ready + 1] == f"STATUS={NO_CONTAINERS}"  # sent with READY=1
        shown = ctl(tmp_path, "status")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.splitlines()[1] == NO_CONTAINERS
        as_json = ctl(tmp_path, "status", "--json")
        assert json.loads(as_json.stdout)["containers"] == []
        assert process.poll() is None

        dropin = config.parent / "forge-sync.d" / "10-box.yaml"
        dropin.parent.mkdir()
        dropin.write_text(
            f"containers:\n  - {{name: box-a, kind: generic, host: 127.0.0.1, root: {remote}}}\n"
        )
        reloaded = ctl(tmp_path, "reload")
        assert (reloaded.returncode, reloaded.stdout.strip()) == (
            0,
            "reloaded: added box-a, removed -, changed -",
        )
        wait_until(lambda: tree_files(tmp_path / "media" / "box-a") != {}, what="box-a synced")
        (row,) = json.loads(ctl(tmp_path, "status", "--json").stdout)["containers"]
        assert row["name"] == "box-a"
        notify.wait_for("STATUS=1 container: ")

        twice = tmp_path / "state" / "containers.d" / "box-a.yaml"
        twice.parent.mkdir(parents=True)
        twice.write_text(
            f"# added by forge-syncctl add\ncontainers:\n  - name: box-a\n    kind: generic\n    host: h\n    root: {remote}\n"
        )
        refused = ctl(tmp_path, "reload")
        assert refused.returncode == 1
        assert (
            f"{twice}:3: containers[0].name: duplicate container name 'box-a' (first at {dropin}:2)"
        ) in refused.stdout
        assert [
            r["name"] for r in json.loads(ctl(tmp_path, "status", "--json").stdout)["containers"]
        ] == ["box-a"]
        twice.unlink()
        again = ctl(tmp_path, "reload")
        assert (again.returncode, again.stdout.strip()) == (
            0,
            "reloaded: added -, removed -, changed -",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        notify.close()
