"""Discovery that does not trust what it runs and reads (issue 23, items 2, 4, 5), with
real processes: a command that leaves a child holding its output, one that prints without
end, a slow one while the daemon is reloaded; an ssh_config with `Match exec` (never run),
a malformed one, a FIFO, and two aliases that map to one container name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer

MIB = 1024 * 1024


def with_discover(config: Path, lines: str) -> None:
    """Insert a `discover:` section into a config written by `write_config`."""
    config.write_text(
        config.read_text().replace("containers:\n", f"discover:\n{lines}containers:\n")
    )


def running(pid: int) -> bool:
    """True while process `pid` exists and is not a zombie (killed, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def peak_rss_kib(pid: int) -> int:
    """The peak resident set size of process `pid` so far (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def ctl(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(work / "run" / "control.sock"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def container_names(work: Path) -> list[str]:
    result = ctl(work, "status", "--json")
    if result.returncode != 0:
        return []
    return sorted(c["name"] for c in json.loads(result.stdout)["containers"])


def log_records(work: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_log(work / "log" / "forge-syncd.jsonl") if r["event"] == event]


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# -- commands --------------------------------------------------------------------------
def test_a_command_leaving_a_child_that_holds_its_output_does_not_hang_discovery(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A command that exits but leaves a background child holding its stdout: discovery
    uses what it printed and returns (the command's process group is killed when it exits;
    before, `--check-config` waited on the child forever), and the child is killed."""
    pid_file = tmp_path / "child.pid"
    entry = json.dumps([{"name": "box-1", "host": "10.1.1.1"}])
    command = f"sleep 1000 & echo $! > {pid_file}; echo '{entry}'"
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(
        config,
        f"  - {{type: command, command: [sh, -c, {json.dumps(command)}], kind: generic, root: /x}}\n",
    )
    try:
        result = forge_syncd("--check-config", "--config", str(config), timeout=60)
        assert result.returncode == 0, result.stderr
        assert "2 containers" in result.stdout and "box-1" in result.stdout
        child = int(pid_file.read_text())
        wait_until(lambda: not running(child), 10, "the background child to be killed")
    finally:
        if pid_file.exists() and running(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_command_printing_without_end_is_stopped_past_one_mib(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A command printing far more than 1 MiB (64 MiB here; `yes` would be endless) is
    killed once 1 MiB is read: it writes less than 2 MiB in all, the daemon's peak RSS
    grows by less than 32 MiB (before: it read everything, then refused it), and the
    source is `discovery_failed`."""
    go, written = tmp_path / "go", tmp_path / "written"
    writer = script(
        tmp_path / "spew",
        f"""#!{sys.executable}
import os, time
for _ in range(200):  # until the test has measured the daemon (at most 20 s)
    if os.path.exists({str(go)!r}):
        break
    time.sleep(0.1)
total = 0
while total < 64 * {MIB}:
    os.write(1, b"y" * 65536)
    total += 65536
    with open({str(written)!r} + ".new", "w") as out:
        out.write(str(total))
    os.replace({str(written)!r} + ".new", {str(written)!r})
""",
    )
    (tmp_path / "remote").mkdir()
    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h", watch="false")
    with_discover(config, f"  - {{type: command, command: [{writer}], interval: 1h}}\n")
    process = start_daemon(config)
    try:

        def first_sync_done() -> bool:
            result = ctl(tmp_path, "status", "--json")
            if result.returncode != 0:
                return False
            (container,) = json.loads(result.stdout)["containers"]
            return container["last_sync"] is not None and container["progress"] is None

        wait_until(first_sync_done, 60, "forge-a's first sync")
        before = peak_rss_kib(process.pid)
        go.touch()
        wait_until(lambda: log_records(tmp_path, "discovery_failed"), 60, "discovery_failed")
        growth_kib = peak_rss_kib(process.pid) - before
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    (failed,) = log_records(tmp_path, "discovery_failed")
    assert f"printed more than {MIB} bytes" in failed["error"]
    assert int(written.read_text()) < 2 * MIB
    assert growth_kib < 32 * 1024, f"the daemon's peak RSS grew by {growth_kib} KiB"


def test_reload_answers_while_a_slow_discovery_command_runs(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A discovery command runs outside the reload lock: `forge-syncctl reload` and SIGHUP
    are answered while it is still running (before, both waited for it), its result is
    applied once it prints, and a command still running when the daemon stops is killed."""
    pids, release, listing = tmp_path / "pids", tmp_path / "release", tmp_path / "boxes.json"
    listing.write_text(json.dumps([{"name": "box-1", "host": "10.1.1.1"}]))
    slow = script(
        tmp_path / "slow",
        f"""#!/bin/sh
echo $$ >> {pids}
i=0
while [ ! -e {release} ] && [ $i -lt 250 ]; do sleep 0.1; i=$((i+1)); done
cat {listing}
""",
    )

    def started() -> list[int]:
        return [int(line) for line in pids.read_text().split()] if pids.exists() else []

    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h", watch="false")
    with_discover(
        config, f"  - {{type: command, command: [{slow}], kind: generic, root: /x, interval: 1h}}\n"
    )
    process = start_daemon(config)
    try:
        wait_until(lambda: started(), 30, "the discovery command")
        first = started()[0]
        answered = ctl(tmp_path, "reload")
        assert answered.returncode == 0 and "reload" in answered.stdout, answered.stderr
        assert running(first), "reload waited for the discovery command"
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: len(log_records(tmp_path, "config_reloaded")) == 2, 20, "SIGHUP")
        assert running(first), "SIGHUP waited for the discovery command"
        release.touch()
        wait_until(lambda: container_names(tmp_path) == ["box-1", "forge-a"], 30, "box-1")
        release.unlink()
        count = len(started())
        assert ctl(tmp_path, "reload").returncode == 0
        wait_until(lambda: len(started()) > count, 30, "the next discovery command")
        last = started()[-1]
        assert running(last)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    wait_until(lambda: not running(last), 10, "the discovery command to be killed at stop")


# -- ssh_config ------------------------------------------------------------------------
MATCH_CONFIG = """\
Host vast-1
    HostName 127.0.0.1
    Port {port}

Match exec "touch {canary}-1"
    User evil

match host vast-* exec "touch {canary}-2"
    Port 1

  MATCH=exec "touch {canary}-3"

Host vast-2
    HostName 127.0.0.1
    Port {port}

\tMatch\toriginalhost vast-2 exec "touch {canary}-4"
    HostName 10.6.6.6
"""


def test_match_blocks_are_skipped_with_a_warning_and_never_run(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """`Match` blocks (any spelling) in a discovered ssh_config are skipped with a warning
    each and never evaluated: no `Match exec` command runs (no canary file) and their
    settings apply to no host; the Host blocks around them are discovered. Before, paramiko
    raised KeyError('host'): a traceback from `--check-config`."""
    canary = tmp_path / "CANARY"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(MATCH_CONFIG.format(port=sshd.port, canary=canary))
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(
        config,
        f"  - {{type: ssh_config, path: {ssh_config}, hosts: ['vast-*'], kind: generic, root: /x}}\n",
    )
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"ssh_config {ssh_config}: 2 found (vast-1, vast-2)" in result.stdout
    for line in (5, 8, 11, 17):
        assert f"warning: line {line}: Match block skipped" in result.stderr
    assert f"{sshd.user}@127.0.0.1:{sshd.port}" in result.stdout
    assert "evil" not in result.stdout and "10.6.6.6" not in result.stdout
    assert not list(tmp_path.glob("CANARY*"))


def test_the_daemon_skips_match_and_refuses_clashing_aliases(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """In the daemon, an ssh_config with a `Match exec` block and two aliases that map to
    one name: the Match block is a `discovery_warning` and never runs; `vast-1` and
    `Vast.1` are both refused with one `discovered_name_clash` record at level error naming
    both aliases and the source; the other host is scheduled. Before, the discovery job
    died on every interval with no record."""
    canary = tmp_path / "CANARY"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"""\
Host vast-1
    HostName 127.0.0.1
Match exec "touch {canary}"
    User evil
Host Vast.1
    HostName 127.0.0.2
Host vast-2
    HostName 127.0.0.1
"""
    )
    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h", watch="false")
    with_discover(
        config,
        f"  - {{type: ssh_config, path: {ssh_config}, hosts: ['vast-*', 'Vast.*'],"
        f" kind: generic, root: {tmp_path / 'remote'}, ssh: {{port: {sshd.port}}}}}\n",
    )
    process = start_daemon(config)
    try:
        wait_until(lambda: container_names(tmp_path) == ["forge-a", "vast-2"], 30, "vast-2")
        wait_until(lambda: log_records(tmp_path, "discovered_name_clash"), 30, "the clash")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    (clash,) = log_records(tmp_path, "discovered_name_clash")
    assert clash["level"] == "error" and clash["name"] == "vast-1"
    assert clash["claimed_by"] == ["Host Vast.1", "Host vast-1"]
    assert clash["source"] == f"ssh_config {ssh_config}"
    (warning,) = log_records(tmp_path, "discovery_warning")
    assert warning["warning"].startswith("line 3: Match block skipped")
    assert not log_records(tmp_path, "discovery_failed")
    assert not canary.exists()


def test_clashing_aliases_are_refused_alike_whatever_the_hash_seed(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """`vast-1` and `Vast.1` both make the container name `vast-1`: both are refused with
    an error naming the two aliases, and fresh processes with different PYTHONHASHSEED
    print the same (before, set order picked one, and which one changed per process)."""
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        "Host vast-1\n  HostName 10.0.0.1\nHost Vast.1\n  HostName 10.0.0.2\n"
        "Host vast-2\n  HostName 10.0.0.3\n"
    )
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    with_discover(
        config,
        f"  - {{type: ssh_config, path: {ssh_config}, hosts: ['vast-*', 'Vast.*'], kind: generic, root: /x}}\n",
    )
    outputs = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        result = subprocess.run(
            [str(BIN / "forge-syncd"), "--check-config", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "FORGE_SYNC_CONFIG": "", "PYTHONHASHSEED": seed},
        )
        assert result.returncode == 0, result.stderr
        outputs.add((result.stdout, result.stderr))
    assert len(outputs) == 1
    ((stdout, stderr),) = outputs
    assert f"ssh_config {ssh_config}: 1 found (vast-2)" in stdout
    assert "10.0.0.1" not in stdout and "10.0.0.2" not in stdout
    assert "error: name 'vast-1' claimed by Host Vast.1 and Host vast-1: all refused" in stderr


def test_a_malformed_ssh_config_is_a_record_never_a_traceback(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A malformed ssh_config never gives a traceback. A Port of non-ASCII digits (`²`:
    before, int() raised ValueError outside any handler, in `--check-config` and in the
    daemon's job) refuses that entry alone and the other host is found; what paramiko
    cannot parse (a bare keyword, an unbalanced quote) is a clear message and, in the
    daemon, a `discovery_failed` record that keeps what the source found before."""
    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h", watch="false")
    bad = tmp_path / "ssh_config"
    with_discover(
        config,
        f"  - {{type: ssh_config, path: {bad}, hosts: ['vast-*'], kind: generic, root: /x,"
        " interval: 1s}\n",
    )
    superscript = "Host vast-1\n  HostName 10.0.0.1\n  Port \u00b2\nHost vast-2\n  Port 22\n"
    bad.write_text(superscript)
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"ssh_config {bad}: 1 found (vast-2)" in result.stdout
    assert "skipped entry 'vast-1': ssh.port: expected an integer" in result.stderr
    cases = {
        "Host vast-1\n  HostName 10.0.0.1\n  Unparsable\n": "Unparsable line Unparsable",
        'Host "vast-1\n  HostName 10.0.0.1\n': "Unparsable host",
    }
    for text, message in cases.items():
        bad.write_text(text)
        result = forge_syncd("--check-config", "--config", str(config))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert f"discover: ssh_config {bad}: cannot read: cannot parse {bad}: {message}" in (
            result.stderr
        )

    bad.write_text(superscript)
    process = start_daemon(config)
    try:
        wait_until(lambda: container_names(tmp_path) == ["forge-a", "vast-2"], 30, "vast-2")
        bad.write_text("Host vast-1\n  HostName 10.0.0.1\n  Unparsable\n")
        wait_until(lambda: log_records(tmp_path, "discovery_failed"), 30, "discovery_failed")
        assert container_names(tmp_path) == ["forge-a", "vast-2"]  # kept through the failure
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    (refused,) = log_records(tmp_path, "discovered_entry_refused")
    assert refused["error"].startswith("entry 'vast-1': ssh.port: expected an integer")
    failed = log_records(tmp_path, "discovery_failed")[0]
    assert "cannot parse" in failed["error"] and "Unparsable line" in failed["error"]


def test_an_ssh_config_that_is_a_fifo_is_refused_not_waited_on(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """An ssh_config path that is a FIFO (or a device) is refused as not a regular file;
    before, opening it blocked discovery (and `--check-config`) until a writer came."""
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    fifo = tmp_path / "ssh_config"
    os.mkfifo(fifo)
    with_discover(config, f"  - {{type: ssh_config, path: {fifo}, kind: generic, root: /x}}\n")
    result = forge_syncd("--check-config", "--config", str(config), timeout=60)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot read: cannot read {fifo}: not a regular file" in result.stderr
