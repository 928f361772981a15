"""End to end: the installed `forge-syncd --once` against a real sshd, killed for real."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from forge_syncd.library.manifest import Manifest
from forge_syncd.paths import TEMP_NAME
from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.terminal import run_in_terminal
from tests.support.trees import expected_forge_files, forge_tree, tree_files, write_file


def test_once_syncs_and_prints_a_summary(sshd: SshdServer, tmp_path: Path) -> None:
    """--once copies the Forge tree, prints one summary line, exits 0; a second run copies
    nothing."""
    remote = tmp_path / "outputs"
    forge_tree(remote)
    config = write_config(tmp_path, sshd, remote, kind="forge")
    first = forge_syncd("--once", "--config", str(config))
    assert first.returncode == 0, first.stderr
    count = len(expected_forge_files(remote))
    assert first.stdout.startswith(f"forge-a: sync success, {count} files, ")
    second = forge_syncd("--once", "--config", str(config))
    assert second.returncode == 0
    assert second.stdout.startswith("forge-a: sync success, 0 files")
    # Quiet: the summary on stdout, nothing on stderr; the log goes to the log file.
    assert second.stderr == ""
    log = tmp_path / "log" / "forge-syncd.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["event"] for r in records} >= {"sync_started", "sync_finished", "file_synced"}
    assert all({"ts", "level", "event"} <= r.keys() for r in records)


def test_check_config_prints_summary_and_bad_config_exits_2(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """--check-config summarises a good config; a bad one names file, line and key; exit 2."""
    config = write_config(tmp_path, sshd, tmp_path / "outputs")
    good = forge_syncd("--check-config", "--config", str(config))
    assert good.returncode == 0 and "forge-a" in good.stdout
    config.write_text(
        config.read_text().replace("    kind: generic", "    kind: generic\n    prot: 1")
    )
    bad = forge_syncd("--check-config", "--config", str(config))
    assert bad.returncode == 2
    assert f"{config}:" in bad.stderr and "containers[0].prot: unknown key" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = forge_syncd("--once", "--container", "nope", "--config", str(config))
    assert unknown.returncode == 2


def test_unreachable_container_exits_1_without_traceback(sshd: SshdServer, tmp_path: Path) -> None:
    """A closed port is a classified `connect` failure: exit 1, a clear line, no traceback."""
    config = write_config(tmp_path, sshd, tmp_path / "outputs")
    config.write_text(config.read_text().replace(f"port: {sshd.port}", f"port: {free_port()}"))
    result = forge_syncd("--once", "--config", str(config))
    assert result.returncode == 1
    assert "forge-a: sync failure" in result.stdout and "connect" in result.stdout
    assert "Traceback" not in result.stderr
    # Said once, by the summary line; the log file has the records.
    assert "Connection refused" not in result.stderr
    log = tmp_path / "log" / "forge-syncd.jsonl"
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "ssh_connect_failed" in events and "sync_failed" in events


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith(".part")]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_mid_run_loses_nothing_and_resumes(
    sshd: SshdServer, tmp_path: Path, seed: int
) -> None:
    """kill -9 at a random moment of a transfer: every file under its final name is
    complete, and the next run completes the tree and leaves no temporary file."""
    rng = random.Random(seed)
    remote = tmp_path / "outputs"
    for i in range(24):
        write_file(remote / f"day{i % 3}" / f"{i:03d}.png", rng.randbytes(400_000), 1.7e9 + i)
    config = write_config(tmp_path, sshd, remote, bwlimit="1536KiB/s", transfers=2)
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--once", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    library = tmp_path / "media" / "forge-a"

    def landed_any() -> bool:
        return any(not TEMP_NAME.match(p.name.encode()) for p in library.rglob("*.png"))

    # The run takes about 6 s (bwlimit); the first files land after the first batch is
    # durable (~2 s, longer on a busy disk). Kill at a random moment after that.
    wait_until(landed_any, timeout=60, what="the first file to land")
    time.sleep(rng.random() * 1.5)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    want = tree_files(remote)
    landed = {
        path: value
        for path, value in tree_files(library).items()
        if not TEMP_NAME.match(path.rsplit(b"/", 1)[-1])
    }
    assert landed, "nothing landed before the kill: move the kill later"
    assert len(landed) < len(want), "everything landed before the kill: move the kill earlier"
    for path, value in landed.items():
        assert value == want[path], f"{path!r} under its final name is not the remote file"
    recorded = Manifest.open(tmp_path / "state").files.records("forge-a")
    assert set(recorded) <= set(landed), "the manifest claims a file that is not on disk"
    resumed = forge_syncd("--once", "--config", str(config), timeout=120)
    assert resumed.returncode == 0, resumed.stdout
    assert tree_files(library) == want
    assert temp_files(library) == []


def test_once_cleans_up_after_a_good_sync_and_never_after_a_failed_one(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """--once purges old synced files where cleanup is enabled; when the same pass's sync
    failed (here: a symlink planted in the library where the remote has a folder: it
    leads outside the library, so nothing is written through it), nothing is purged."""
    remote = tmp_path / "outputs"
    write_file(remote / "old" / "a.png", b"a" * 50, 1.7e9)
    config = write_config(tmp_path, sshd, remote)
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:", "    cleanup: {enabled: true, older_than: 1h}\n    ssh: {port:"
        )
    )
    clash = tmp_path / "media" / "forge-a" / "clash"
    clash.parent.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    clash.symlink_to(tmp_path / "elsewhere")
    write_file(remote / "clash" / "x.png", b"x", 1.7e9)
    failed = forge_syncd("--once", "--config", str(config))
    assert failed.returncode == 1
    assert "forge-a: sync failure" in failed.stdout
    assert "forge-a: cleanup failure" in failed.stdout and "last sync" in failed.stdout
    assert (remote / "old" / "a.png").exists()
    assert not any((tmp_path / "elsewhere").iterdir())
    clash.unlink()
    good = forge_syncd("--once", "--config", str(config))
    assert good.returncode == 0, good.stdout
    assert "forge-a: cleanup success, 2 files," in good.stdout
    assert tree_files(remote) == {}
    assert (tmp_path / "media" / "forge-a" / "old" / "a.png").read_bytes() == b"a" * 50


@pytest.mark.parametrize("case", ["changed host key", "refused key", "closed port", "unknown host"])
def test_connection_failures_exit_1_with_their_kind(
    sshd: SshdServer, tmp_path: Path, case: str
) -> None:
    """Each connection failure gives its classified kind on the summary line and exit 1."""
    from tests.support.sshd import make_key

    config = write_config(tmp_path, sshd, tmp_path / "outputs")
    text = config.read_text()
    kind = {"changed host key": "host_key", "refused key": "auth"}.get(case, "connect")
    if case == "changed host key":
        keytype, blob = make_key(tmp_path / "other").split()[:2]
        (tmp_path / "known").write_text(f"[127.0.0.1]:{sshd.port} {keytype} {blob}\n")
        text = text.replace(str(sshd.known_hosts), str(tmp_path / "known"))
    elif case == "refused key":
        make_key(tmp_path / "stranger")
        text = text.replace(str(sshd.client_key), str(tmp_path / "stranger"))
    elif case == "closed port":
        text = text.replace(f"port: {sshd.port}", f"port: {free_port()}")
    else:
        text = text.replace("host: 127.0.0.1", "host: no-such-host.invalid")
    config.write_text(text)
    result = forge_syncd("--once", "--config", str(config))
    assert result.returncode == 1
    assert "forge-a: sync failure, 0 files, 0 B" in result.stdout and f"({kind}:" in result.stdout
    assert "Traceback" not in result.stderr


def test_once_prints_only_its_summary_on_a_terminal_and_v_and_q(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 25, item 6): on a terminal --once printed the whole info log
    (every file, each symlink skipped on every run) before its summary lines. Now, on a
    terminal as piped: the summary lines only (and what was left on the container, and
    why); the log goes to the log file. `-v` adds a line for each file; `-q` prints nothing
    when all went well, and only the errors when not; the exit codes are unchanged."""
    remote = tmp_path / "outputs"
    for index in range(3):
        write_file(remote / f"day/{index}.png", b"x" * (1000 + index), 1.7e9)
    write_file(remote / "day/big.png", b"y" * 5000, 1.7e9)
    (remote / "day" / "link.png").symlink_to(remote / "day" / "0.png")
    config = write_config(tmp_path, sshd, remote, max_file_size="4KiB")
    argv = [str(BIN / "forge-syncd"), "--once", "--config", str(config)]
    code, output = run_in_terminal(argv, env={"FORGE_SYNC_CONFIG": ""})
    lines = output.decode().replace("\r", "").splitlines()
    assert code == 0, lines
    assert len(lines) == 2, lines
    assert re.fullmatch(r"forge-a: sync success, 3 files, 2\.9 KiB synced in [0-9.]+s", lines[0])
    assert lines[1] == (
        "  not copied: 1 file (4.9 KiB), larger than max_file_size: raise"
        " sync.max_file_size to sync it"
    )
    log = tmp_path / "log" / "forge-syncd.jsonl"
    assert "file_synced" in log.read_text()
    write_file(remote / "day/3.png", b"z" * 10, 1.7e9)
    verbose = forge_syncd("--once", "-v", "--config", str(config))
    assert verbose.returncode == 0 and verbose.stderr == ""
    assert verbose.stdout.splitlines()[0] == "forge-a: synced day/3.png (10 B)"
    assert verbose.stdout.splitlines()[1].startswith("forge-a: sync success, 1 file, 10 B")
    quiet = forge_syncd("--once", "-q", "--config", str(config))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    config.write_text(config.read_text().replace(f"port: {sshd.port}", f"port: {free_port()}"))
    failed = forge_syncd("--once", "-q", "--config", str(config))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("forge-a: sync failure, 0 files, 0 B synced in ")
    assert "(connect: 127.0.0.1:" in failed.stderr and len(failed.stderr.splitlines()) == 1
    wrong = forge_syncd("-v", "--config", str(config))
    assert wrong.returncode == 2 and "-v/--verbose and -q/--quiet go with --once" in wrong.stderr
