"""forge-syncctl when the daemon is not what it expects: gone (history and find read the
state files; other commands say which socket, why, and what to check), or speaking
another protocol version (a fake daemon on a real socket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import BIN, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.fake_daemon import FakeDaemon
from tests.support.sshd import SshdServer
from tests.support.trees import write_file


def ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FORGE_SYNC_SOCKET": "", "FORGE_SYNC_CONFIG": "", **(env or {})},
    )


@pytest.mark.parametrize(
    ("hello", "said"),
    [
        (
            {"protocol": 2, "version": "9.0.0"},
            "forge-syncd 9.0.0 at {path} speaks control protocol 2; this forge-syncctl (0.1.0)"
            " speaks 1: the daemon is newer: upgrade forge-syncctl",
        ),
        (
            {"protocol": 0, "version": "0.0.1"},
            "forge-syncd 0.0.1 at {path} speaks control protocol 0; this forge-syncctl (0.1.0)"
            " speaks 1: the daemon is older: restart it on the installed version",
        ),
        ({"version": "?"}, "speaks control protocol None; this forge-syncctl (0.1.0) speaks 1"),
    ],
)
def test_another_protocol_version_is_refused_clearly(
    tmp_path: Path, hello: dict[str, object], said: str
) -> None:
    """The CLI checks `hello`'s protocol number before anything else: a daemon that speaks
    another one (newer, older, or does not say) is refused with which side is older and
    what to do, exit 1; no command is sent to it."""
    path = tmp_path / "fake.sock"
    fake = FakeDaemon(path, hello)
    try:
        done = ctl("--socket", str(path), "status")
    finally:
        fake.close()
    assert done.returncode == 1, done
    assert said.format(path=path) in done.stderr and "Traceback" not in done.stderr
    assert [json.loads(r)["method"] for r in fake.requests] == ["hello"]


def test_unreachable_says_which_socket_where_from_and_what_to_check(tmp_path: Path) -> None:
    """Regression (issue 25, item 10): "cannot reach forge-syncd" gave no hint. It names
    the socket, why, where that path came from, and what to check; exit 3."""
    config = tmp_path / "forge-sync.yaml"
    config.write_text(f"control: {{socket: {tmp_path}/nothing.sock}}\n")
    done = ctl("--config", str(config), "status")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        f"forge-syncctl: cannot reach forge-syncd at {tmp_path}/nothing.sock: No such file or"
        " directory",
        f"  the socket path is from control.socket in {config}",
        "  is forge-syncd running? systemctl status forge-syncd",
        "  another daemon's socket: --socket PATH, or --config PATH (its control.socket)",
    ]
    from_env = ctl("pause", "forge-a", env={"FORGE_SYNC_SOCKET": str(tmp_path / "x.sock")})
    assert from_env.returncode == 3 and "the socket path is from $FORGE_SYNC_SOCKET" in (
        from_env.stderr
    )


@pytest.fixture(scope="module")
def stopped(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A daemon (with a catalog sink) that synced three files, then stopped: its config."""
    work = tmp_path_factory.mktemp("stopped")
    remote = work / "remote"
    for name in ("cat.png", "dog.png", "day/fox.png"):
        write_file(remote / name, os.urandom(1000), 1.7e9)
    config = write_config(work, sshd, remote, interval="1h", watch="false")
    catalog = f"{{name: catalog, type: catalog, path: {work}/state/catalog.sqlite}}"
    config.write_text(config.read_text() + f"ingest:\n  - {catalog}\n")
    process = start_daemon(config)
    socket_path = work / "run" / "control.sock"
    try:
        wait_until(socket_path.exists, what="the control socket")

        def catalogued() -> bool:
            done = ctl("--config", str(config), "find", "--json")
            return done.returncode == 0 and len(json.loads(done.stdout)["files"]) == 3

        wait_until(catalogued, timeout=60, what="three files in the catalog")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    yield config


def test_history_reads_the_manifest_when_the_daemon_is_down(stopped: Path) -> None:
    """Regression (issue 25, item 10): `history` needed the daemon although its data is a
    local SQLite file. With the daemon down it reads the manifest read-only, says so on
    stderr (stdout stays data), exit 0; an unknown NAME is exit 2 with the names there are."""
    state = stopped.parent / "state" / "manifest.sqlite"
    done = ctl("--config", str(stopped), "history")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        f"forge-syncctl: forge-syncd is not running ({stopped.parent}/run/control.sock: No such"
    )
    assert done.stderr.rstrip().endswith(f"; from {state}")
    header, *rows = done.stdout.splitlines()
    assert header.split() == [
        "STARTED",
        "CONTAINER",
        "JOB",
        "TRIGGER",
        "RESULT",
        "FILES",
        "SIZE",
        "DURATION",
        "ERROR",
    ]
    assert any(r.split()[3:7] == ["forge-a", "sync", "scheduled", "success"] for r in rows), rows
    runs = json.loads(ctl("--config", str(stopped), "history", "--json").stdout)["runs"]
    assert {r["trigger"] for r in runs} == {"scheduled"} and runs[-1]["files"] == 3
    unknown = ctl("--config", str(stopped), "history", "forge-b")
    assert unknown.returncode == 2
    assert "no container 'forge-b' (did you mean 'forge-a'? containers: forge-a)" in (
        unknown.stderr
    )


def test_find_reads_the_catalog_when_the_daemon_is_down(stopped: Path) -> None:
    """`find` with the daemon down searches the config's catalog read-only, says so, and
    answers as the daemon would (text and --json); bad options are exit 2."""
    catalog = stopped.parent / "state" / "catalog.sqlite"
    done = ctl("--config", str(stopped), "find", "--container", "forge-a")
    assert done.returncode == 0, done.stderr
    assert done.stderr.rstrip().endswith(f"; from {catalog}")
    assert sorted(line.split()[4] for line in done.stdout.splitlines()[1:]) == [
        "cat.png",
        "day/fox.png",
        "dog.png",
    ]
    as_json = json.loads(ctl("--config", str(stopped), "find", "--json", "--limit", "1").stdout)
    assert len(as_json["files"]) == 1 and as_json["files"][0]["container"] == "forge-a"
    bad = ctl("--config", str(stopped), "find", "--since", "soon")
    assert bad.returncode == 2 and "since: expected a duration" in bad.stderr


def test_without_state_files_history_says_both_reasons(tmp_path: Path) -> None:
    """No daemon and no manifest: exit 3, naming the socket and the missing state file."""
    config = tmp_path / "forge-sync.yaml"
    config.write_text(f"control: {{socket: {tmp_path}/none.sock}}\nstate_dir: {tmp_path}/state\n")
    done = ctl("--config", str(config), "history")
    assert done.returncode == 3
    assert f"cannot reach forge-syncd at {tmp_path}/none.sock" in done.stderr
    assert f"no {tmp_path}/state/manifest.sqlite" in done.stderr
