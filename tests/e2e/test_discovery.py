"""`discover:` with real files and a real command: an OpenSSH client config and a program
printing JSON. `--check-config` shows what was found; the daemon starts containers that
appear, stops those that vanish (keeping their library and history), skips bad entries,
and keeps what a failing source found before."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from forge_syncd.service.discover.sources import container_name, merge
from tests.conftest import make_container
from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import write_file

OLD = 1.7e9


def with_discover(config: Path, lines: str) -> None:
    """Insert a `discover:` section into a config written by `write_config`."""
    config.write_text(
        config.read_text().replace("containers:\n", f"discover:\n{lines}containers:\n")
    )


def test_check_config_lists_what_an_ssh_config_holds(sshd: SshdServer, tmp_path: Path) -> None:
    """Host aliases matching `hosts` (no wildcards) become containers named after them, with
    HostName, Port, User and IdentityFile; the source's kind and keys apply to each."""
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"""\
Host vast-1
    HostName 127.0.0.1
    Port {sshd.port}
    User {sshd.user}
    IdentityFile {sshd.client_key}

Host Vast.Two
    HostName 10.9.8.7
    Port 40022

Host other
    HostName 10.0.0.1

Host *
    ServerAliveInterval 30
"""
    )
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(
        config,
        f"  - {{type: ssh_config, path: {ssh_config}, hosts: ['vast-*', 'Vast.*'], kind: comfyui,"
        " sync: {interval: 10m}}\n",
    )
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"discover: ssh_config {ssh_config}: 2 found (vast-1, vast-two)" in result.stdout
    assert "3 containers" in result.stdout
    assert f"vast-1           comfyui  {sshd.user}@127.0.0.1:{sshd.port}" in result.stdout
    assert "vast-two         comfyui  root@10.9.8.7:40022  /workspace/ComfyUI/output" in (
        result.stdout
    )
    assert "other" not in result.stdout


def test_a_command_source_skips_bad_entries_and_keeps_the_good(
    sshd: SshdServer, tmp_path: Path
) -> None:
    entries = [
        {"name": "box-1", "host": "10.1.1.1", "ssh": {"port": 2201}},
        {"name": "box-2", "host": "10.1.1.2", "ssh": {"port": "not a port"}},
        "just a string",
        {"name": "box-3", "host": "10.1.1.3", "ssh": {"prot": 22}},
        {"name": "forge-a", "host": "10.1.1.4"},  # the configured container's name
    ]
    script = tmp_path / "list-boxes"
    script.write_text(f"#!{sys.executable}\nprint({json.dumps(json.dumps(entries))})\n")
    script.chmod(0o755)
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(config, f"  - {{type: command, command: [{script}], kind: generic, root: /x}}\n")
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert f"discover: command {script}: 2 found (box-1, forge-a)" in result.stdout
    assert "box-1            generic  root@10.1.1.1:2201  /x" in result.stdout
    assert "entry 'box-2': ssh.port: expected an integer" in result.stderr
    assert "entry 2: not a mapping" in result.stderr
    assert "entry 'box-3': ssh.prot: unknown key (did you mean 'port'?)" in result.stderr
    assert "skipped forge-a: a container of that name exists already" in result.stderr


def test_a_discovery_source_that_is_not_there_is_reported(sshd: SshdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(config, f"  - {{type: command, command: [{tmp_path / 'missing'}]}}\n")
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 0
    assert "cannot read: cannot run" in result.stderr and "No such file" in result.stderr
    (tmp_path / "b").mkdir()
    bad = write_config(tmp_path / "b", sshd, tmp_path / "remote")
    with_discover(bad, "  - {type: ssh_config}\n")
    refused = forge_syncd("--check-config", "--config", str(bad))
    assert refused.returncode == 2 and "discover[0].path: required for type ssh_config" in (
        refused.stderr
    )


def test_the_daemon_follows_the_containers_a_command_lists(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Boxes appear and vanish in what the command prints: each new one is synced; a vanished
    one stops being scheduled but keeps its library and history; a failing command keeps
    what it found before."""
    listing = tmp_path / "boxes.json"
    script = tmp_path / "list-boxes"
    script.write_text(
        f"#!/bin/sh\n[ -e {tmp_path}/fail ] && {{ echo broken >&2; exit 1; }}\ncat {listing}\n"
    )
    script.chmod(0o755)
    remotes = {name: tmp_path / f"remote-{name}" for name in ("box-1", "box-2")}
    for name, remote in remotes.items():
        write_file(remote / f"{name}.png", name.encode() * 100, OLD)

    def entry(name: str) -> dict[str, object]:
        return {"name": name, "host": "127.0.0.1", "root": str(remotes[name])}

    listing.write_text(json.dumps([entry("box-1")]))
    config = write_config(tmp_path, sshd, tmp_path / "remote-static", interval="1h")
    with_discover(
        config,
        f"  - {{type: command, command: [{script}], interval: 1s, kind: generic,"
        f" ssh: {{port: {sshd.port}}}}}\n",
    )
    process = start_daemon(config)
    sock = tmp_path / "run" / "control.sock"
    media = tmp_path / "media"

    def names() -> list[str]:
        result = subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(sock), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            return []
        return sorted(c["name"] for c in json.loads(result.stdout)["containers"])

    try:
        wait_until(lambda: (media / "box-1" / "box-1.png").exists(), 60, "box-1 synced")
        assert names() == ["box-1", "forge-a"]
        listing.write_text(json.dumps([entry("box-1"), entry("box-2")]))
        wait_until(lambda: (media / "box-2" / "box-2.png").exists(), 60, "box-2 synced")
        (tmp_path / "fail").touch()
        listing.write_text(json.dumps([entry("box-2")]))
        wait_until(
            lambda: any(
                r["event"] == "discovery_failed"
                for r in read_log(tmp_path / "log" / "forge-syncd.jsonl")
            ),
            30,
            "a failed discovery",
        )
        assert names() == ["box-1", "box-2", "forge-a"]  # kept through the failure
        (tmp_path / "fail").unlink()
        wait_until(lambda: names() == ["box-2", "forge-a"], 30, "box-1 to go")
        assert (media / "box-1" / "box-1.png").read_bytes() == b"box-1" * 100
        history = subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(sock), "history", "box-1", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert history.returncode == 0 and json.loads(history.stdout)["runs"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    events = [r["event"] for r in read_log(tmp_path / "log" / "forge-syncd.jsonl")]
    assert events.count("containers_discovered") >= 3


def test_names_and_merge(sshd: SshdServer) -> None:
    assert container_name("Vast.AI-Box_7") == "vast-ai-box_7"
    assert container_name("--x") == "x"
    configured = (make_container(sshd, Path("/a"), name="a"),)
    found = [[make_container(sshd, Path("/b"), name="b"), make_container(sshd, Path("/c"), "a")]]
    merged, clashes = merge(configured, found)
    assert [c.name for c in merged] == ["a", "b"]
    assert clashes == ["a: a container of that name exists already"]
