"""The control socket and forge-syncctl against a running daemon and a real sshd."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from forge_syncd.control.client import ControlClient
from forge_syncd.control.server import MAX_CLIENTS, TEST_IDLE_ENV
from tests.support.cli import BIN, write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.terminal import run_in_terminal
from tests.support.trees import tree_files, write_file


@dataclass
class Running:
    work: Path
    remote: Path
    socket: Path
    process: subprocess.Popen[bytes]

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def call(self, method: str, **params: object) -> object:
        with ControlClient(self.socket) as client:
            return client.call(method, params, timeout=60)

    def raw(self, data: bytes, expect_lines: int = 1) -> list[dict[str, object]]:
        """Send raw bytes on a fresh connection; return the response lines."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket))
            # A daemon that answers at once and closes (busy) may have done so already:
            # its answer is still there to read.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            reader = sock.makefile("rb")
            return [json.loads(reader.readline()) for _ in range(expect_lines)]


def idle(running: Running) -> bool:
    (container,) = running.call("status")["containers"]  # type: ignore[index]
    return bool(container["state"] == "idle" and container["last_sync"])


@pytest.fixture(scope="module")
def daemon(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One daemon for the module: a container with old files, cleanup enabled (1 h age),
    live mode off (these tests time runs they start; live mode is test_live_daemon.py's)."""
    work = tmp_path_factory.mktemp("control")
    remote = work / "remote"
    for i in range(5):
        write_file(remote / "day" / f"{i}.png", os.urandom(20_000), 1.7e9)
    config = write_config(work, sshd, remote, interval="1h", watch="false")
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:",
            "    cleanup: {enabled: true, older_than: 1h, interval: 1h}\n    ssh: {port:",
        )
    )
    process = start_daemon(config)
    running = Running(work, remote, work / "run" / "control.sock", process)
    wait_until(lambda: running.socket.exists(), what="the control socket")
    wait_until(lambda: len(tree_files(work / "media" / "forge-a")) == 5, what="first sync")
    wait_until(lambda: idle(running), what="the first sync to finish")
    yield running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_socket_is_0660_and_hello_answers(daemon: Running) -> None:
    """The socket is created 0660 and answers the version handshake."""
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o660
    assert daemon.call("hello") == {"protocol": 1, "version": "0.1.0"}


def test_status_json_shape(daemon: Running) -> None:
    """`status --json` has SPEC's shape and real values."""
    result = daemon.ctl("status", "--json")
    assert result.returncode == 0
    status = json.loads(result.stdout)
    assert set(status["daemon"]) == {"version", "started_at", "pid"}
    assert status["daemon"]["pid"] == daemon.process.pid
    (container,) = status["containers"]
    assert set(container) == {
        "name",
        "transport",
        "state",
        "last_sync",
        "last_cleanup",
        "next_sync_at",
        "next_cleanup_at",
        "watch",
        "watch_status",
        "remote_only",
        "last_copy",
        "progress",
        "bwlimit",
    }
    limit = container["bwlimit"]  # no limit set; what it received lately, its round trip
    assert (limit["setting"], limit["rate_bps"]) == (None, None)
    assert set(limit) == {"setting", "rate_bps", "measured_bps", "rtt_s"}
    assert status["limits"] == {"bwlimit": {"setting": None, "rate_bps": None}}
    assert container["remote_only"] == {"files": 0, "bytes": 0, "oldest_s": None}
    assert container["watch_status"] == "off"
    assert container["last_copy"]["files"] == 5 and container["last_copy"]["trigger"] == "scheduled"
    assert container["name"] == "forge-a" and container["state"] == "idle"
    assert container["transport"] == "ssh"
    assert container["watch"] == "off"
    assert set(container["last_sync"]) == {
        "started_at",
        "finished_at",
        "result",
        "files",
        "bytes",
        "error",
    }
    assert container["last_sync"]["result"] == "success"
    assert container["next_sync_at"].endswith("Z")
    table = daemon.ctl("status")
    assert "forge-a" in table.stdout and "success" in table.stdout


def test_sync_wait_reports_the_run_and_history_lists_it(daemon: Running) -> None:
    """`sync --wait` runs now and exits with the result; `history` shows the run."""
    write_file(daemon.remote / "day" / "new.png", b"new image", 1.7e9)
    result = daemon.ctl("sync", "--wait")
    assert result.returncode == 0, result.stderr
    assert "forge-a: sync success, 1 file, " in result.stdout
    history = json.loads(daemon.ctl("history", "forge-a", "--limit", "2", "--json").stdout)
    newest = history["runs"][0]
    assert (newest["job"], newest["result"], newest["files"]) == ("sync", "success", 1)
    assert set(newest) == {
        "container",
        "job",
        "run_id",
        "started_at",
        "finished_at",
        "result",
        "files",
        "bytes",
        "error",
        "trigger",
        "dry_run",
    }
    assert (newest["trigger"], newest["dry_run"]) == ("manual", False)
    queued = daemon.ctl("sync")
    assert queued.returncode == 0 and "queued: forge-a" in queued.stdout


def test_cleanup_dry_run_lists_and_deletes_nothing(daemon: Running) -> None:
    """`cleanup --dry-run` prints the decision list of the daemon's rule; nothing goes."""
    before = tree_files(daemon.remote)
    result = daemon.ctl("cleanup", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith(f"forge-a: cleanup dry run: would delete {len(before)} files, ")
    assert sum(1 for line in lines if line.split()[1:3] == ["would", "delete"]) == len(before)
    assert tree_files(daemon.remote) == before


def test_pause_resume_and_unknown_names(daemon: Running) -> None:
    """pause/resume change the state and scheduling, and `resume` says what the container
    does now (not just `idle`); unknown names exit 2, naming the containers there are with
    a did-you-mean."""
    assert daemon.ctl("pause", "forge-a").stdout.startswith("forge-a: paused")
    status = daemon.call("status")
    assert status["containers"][0]["state"] == "paused"  # type: ignore[index]
    assert status["containers"][0]["next_sync_at"] is None  # type: ignore[index]
    resumed = daemon.ctl("resume", "forge-a")
    assert resumed.returncode == 0
    assert resumed.stdout.startswith("forge-a: resumed; idle, next sync in ")
    assert daemon.call("status")["containers"][0]["next_sync_at"]  # type: ignore[index]
    for command in (("pause", "nope"), ("sync", "nope"), ("history", "nope"), ("status", "nope")):
        result = daemon.ctl(*command)
        assert result.returncode == 2 and "no container 'nope'" in result.stderr
        assert "containers: forge-a" in result.stderr
    typo = daemon.ctl("sync", "forge-b")
    assert typo.returncode == 2
    assert "no container 'forge-b' (did you mean 'forge-a'? containers: forge-a)" in typo.stderr


def test_cancel_aborts_a_running_transfer(daemon: Running) -> None:
    """`cancel` stops a running sync: its run ends `cancelled`, no partial file lands."""
    write_file(daemon.remote / "slow" / "big.mp4", os.urandom(6_000_000), 1.7e9)
    config = daemon.work / "forge-sync.yaml"
    original = config.read_text()
    config.write_text(original.replace("settle: 0s", "settle: 0s, bwlimit: 1MiB/s"))
    try:
        # A change of bwlimit alone keeps the runner (a running transfer takes it at once):
        # the slow sync is asked for.
        assert "changed forge-a" in daemon.ctl("reload").stdout
        daemon.ctl("sync", "forge-a")
        wait_until(
            lambda: daemon.call("status")["containers"][0]["state"] == "syncing",  # type: ignore[index]
            what="the slow sync",
        )
        assert "cancelling its sync" in daemon.ctl("cancel", "forge-a").stdout
        wait_until(lambda: idle(daemon), what="the cancelled sync to end")
        last = daemon.call("history", container="forge-a", limit=1)["runs"][0]  # type: ignore[index]
        assert last["result"] == "cancelled"
        assert not (daemon.work / "media" / "forge-a" / "slow" / "big.mp4").exists()
        assert not list((daemon.work / "media" / "forge-a").rglob("*.part"))
    finally:
        config.write_text(original)
        daemon.ctl("reload")
        (daemon.remote / "slow" / "big.mp4").unlink()


def test_ctrl_c_while_waiting_says_the_sync_goes_on_and_exits_130(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 25, item 4): Ctrl-C during `sync --wait` exited 1 silently while
    the run went on. It says the sync goes on in the daemon and how to follow or cancel
    it, and exits 130; the run does go on and ends `success`. The bar shown is this run's,
    with its files and binary sizes.

    A daemon of its own, slow (bwlimit) from its start: its one runner's first scheduled
    sync is over before the file is written, and nothing else syncs (interval 1 h, live
    mode and cleanup off, no reload), so the file is this run's to copy (in the module's
    daemon a reload's first sync, or the one before it, could take it first)."""
    remote = tmp_path / "remote"
    write_file(remote / "day" / "0.png", os.urandom(20_000), 1.7e9)
    config = write_config(tmp_path, sshd, remote, interval="1h", watch="false", bwlimit="1MiB/s")
    process = start_daemon(config)
    daemon = Running(tmp_path, remote, tmp_path / "run" / "control.sock", process)
    try:
        wait_until(lambda: daemon.socket.exists(), what="the control socket")
        wait_until(lambda: idle(daemon), what="the first sync to finish")
        write_file(remote / "slow" / "wait2.mp4", os.urandom(3_000_000), 1.7e9)
        argv = [str(BIN / "forge-syncctl"), "--socket", str(daemon.socket), "sync", "--wait"]
        code, output = run_in_terminal(argv, columns=120, interrupt_on=b" MiB")
        text = output.decode(errors="replace")
        assert code == 130, text
        assert "0/1 file" in text and "/2.9 MiB" in text, text  # this run's bar
        assert (
            "forge-syncctl: stopped waiting; the sync of every container goes on in the daemon"
            " (follow it: forge-syncctl watch; stop it: forge-syncctl cancel NAME)"
        ) in " ".join(text.split())

        def manual() -> dict[str, object]:
            runs = daemon.call("history", container="forge-a", limit=5)["runs"]  # type: ignore[index]
            return next(r for r in runs if r["trigger"] == "manual")

        wait_until(lambda: manual()["finished_at"] is not None, timeout=60, what="the sync")
        assert (manual()["result"], manual()["files"]) == ("success", 1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_reload_reports_a_bad_config_and_keeps_running(daemon: Running) -> None:
    """`reload` with a broken config exits 1 with the errors; the daemon keeps the old one."""
    config = daemon.work / "forge-sync.yaml"
    original = config.read_text()
    config.write_text(original.replace("interval: 1h", "interval: soon", 1))
    try:
        result = daemon.ctl("reload")
        assert result.returncode == 1 and "expected a duration" in result.stdout
    finally:
        config.write_text(original)
    assert daemon.call("hello")


def test_hostile_requests_get_errors_and_the_connection_stays(daemon: Running) -> None:
    """Invalid JSON, unknown methods and wrong params each get their error code, on one
    connection that keeps answering."""
    lines = (
        b"not json\n"
        + b'{"id": 1, "method": "explode"}\n'
        + b'{"id": 2, "method": "history", "params": {"limit": "ten"}}\n'
        + b'{"id": 3, "method": "sync", "params": {"containers": "forge-a"}}\n'
        + b"[1, 2]\n"
        + b'{"id": 4, "method": "hello"}\n'
    )
    responses = daemon.raw(lines, expect_lines=6)
    codes = [r.get("error", {}).get("code") for r in responses]  # type: ignore[union-attr]
    assert codes == [
        "bad_request",
        "unknown_method",
        "bad_params",
        "bad_params",
        "bad_request",
        None,
    ]
    assert responses[5]["ok"] is True and responses[1]["id"] == 1


def test_oversized_line_is_refused_and_the_connection_closed(daemon: Running) -> None:
    """A 2 MiB line gets `too_large` and the connection is closed; others are unaffected."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"x" * (2 * 1024 * 1024))
        reader = sock.makefile("rb")
        response = json.loads(reader.readline())
        assert response["error"]["code"] == "too_large"
        try:
            rest = reader.readline()
        except ConnectionResetError:  # closed with our unread bytes pending: RST
            rest = b""
        assert rest == b""
    assert daemon.call("hello")


def test_silent_and_non_reading_clients_do_not_block_others(daemon: Running) -> None:
    """Clients that connect and say nothing, or `watch` and never read, and 50 concurrent
    clients: status still answers for everyone."""
    silent = [socket.socket(socket.AF_UNIX) for _ in range(5)]
    for sock in silent:
        sock.connect(str(daemon.socket))
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(daemon.socket))
    stuck.sendall(b'{"id": 1, "method": "watch"}\n')
    results: list[object] = []

    def client() -> None:
        results.append(daemon.call("status"))

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 50
    for sock in [*silent, stuck]:
        sock.close()
    assert daemon.call("hello")


PEER_PROBE = """
import os, socket, sys, time
os.chdir(sys.argv[1])  # reach the socket by a relative name: no search right on its parents
os.setgroups([])
os.setgid(65534)
os.setuid(65534)  # from here on we are `nobody`
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[2])
time.sleep(float(sys.argv[3]))  # a client slower than the daemon's refusal
sock.sendall(b'{"id": 7, "method": "hello"}\\n')
sys.stdout.write(sock.makefile("rb").readline().decode())
"""


@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_peers_outside_the_group_are_refused(daemon: Running, delay: float) -> None:
    """SO_PEERCRED: a user that is not root, the daemon's user or in the socket's group is
    refused, even when file permissions would let it connect, and the refusal answers its
    request (regression: the daemon closed first, so a client that sent after that got EPIPE
    instead of the reason)."""
    os.chmod(daemon.socket, 0o666)  # noqa: S103 - let file permissions allow `nobody`
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                PEER_PROBE,
                str(daemon.socket.parent),
                daemon.socket.name,
                str(delay),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.chmod(daemon.socket, 0o660)
    assert result.stdout, result.stderr
    response = json.loads(result.stdout)
    assert (response["id"], response["ok"], response["error"]["code"]) == (7, False, "forbidden")


def test_second_daemon_refuses_and_stale_socket_is_replaced(
    daemon: Running, sshd: SshdServer, tmp_path: Path
) -> None:
    """A second daemon on a live socket refuses to start (exit 1, clear message); a dead
    socket file left by a crash is replaced."""
    second = subprocess.run(
        [str(BIN / "forge-syncd"), "--config", str(daemon.work / "forge-sync.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
    stale = tmp_path / "run" / "control.sock"
    stale.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))  # bound, never listening: what a kill -9 leaves
    config = write_config(tmp_path, sshd, tmp_path / "remote", interval="1h")
    (tmp_path / "remote").mkdir()
    process = start_daemon(config)
    try:
        wait_until(
            lambda: any(
                r["event"] == "daemon_started"
                for r in read_log(tmp_path / "log" / "forge-syncd.jsonl")
            )
        )
        with ControlClient(stale) as client:
            assert client.call("hello")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_ctl_without_a_daemon_exits_3_naming_the_socket(tmp_path: Path) -> None:
    """No daemon: exit 3 with one line naming the socket path and why, no traceback."""
    missing = tmp_path / "nothing.sock"
    result = subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(missing), "status"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert str(missing) in result.stderr and "Traceback" not in result.stderr


def test_watch_in_a_terminal_shows_moving_bars(daemon: Running) -> None:
    """`forge-syncctl watch` in a pseudo-terminal draws a bar whose byte count moves while
    a (rate-limited) sync runs."""
    moving = re.compile(rb"([0-9.]+)/[0-9.]+ MiB")  # the bar's bytes done, of its total
    write_file(daemon.remote / "slow" / "watch.mp4", os.urandom(3_000_000), 1.7e9)
    config = daemon.work / "forge-sync.yaml"
    original = config.read_text()
    config.write_text(original.replace("settle: 0s", "settle: 0s, bwlimit: 1MiB/s"))
    daemon.ctl("reload")
    fd, terminal = pty.openpty()
    os.set_inheritable(terminal, True)
    watcher = subprocess.Popen(
        [str(BIN / "forge-syncctl"), "--socket", str(daemon.socket), "watch"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "120", "LINES": "20", "TERM": "xterm"},
    )
    os.close(terminal)
    output = b""
    try:
        time.sleep(1)
        daemon.ctl("sync")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(set(moving.findall(output))) < 2:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                output += os.read(fd, 65536)
    finally:
        watcher.send_signal(signal.SIGINT)
        # Keep draining the terminal: a watcher blocked writing to a full pty cannot exit.
        deadline = time.monotonic() + 10
        while watcher.poll() is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):
                    os.read(fd, 65536)
        watcher.wait(timeout=1)
        os.close(fd)
        config.write_text(original)
        daemon.ctl("reload")
    text = output.decode(errors="replace")
    assert "forge-a sync" in text
    done = moving.findall(output)
    assert len(set(done)) >= 2, text[-2000:]


# -- a daemon of its own, with a short idle limit -----------------------------------------------
QUICK_IDLE_S = 15  # long enough to run forge-syncctl twice while the slots are held


@pytest.fixture(scope="module")
def quick(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A daemon whose control socket drops a client after QUICK_IDLE_S without a request
    (the test hook FORGE_SYNCD_TEST_CONTROL_IDLE_S; the product's limit is 30 s), with a
    SQLite catalog sink for `find`."""
    work = tmp_path_factory.mktemp("quick")
    remote = work / "remote"
    write_file(remote / "day" / "fox.png", os.urandom(2000), 1.7e9)
    config = write_config(work, sshd, remote, interval="1h", watch="false")
    catalog = f"{{name: catalog, type: catalog, path: {work}/catalog.sqlite}}"
    config.write_text(config.read_text() + f"ingest:\n  - {catalog}\n")
    process = start_daemon(config, extra_env={TEST_IDLE_ENV: str(QUICK_IDLE_S)})
    running = Running(work, remote, work / "run" / "control.sock", process)
    wait_until(lambda: running.socket.exists(), what="the control socket")
    wait_until(lambda: idle(running), what="the first sync to finish")
    yield running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def has_data(sock: socket.socket) -> bool:
    """Return whether the daemon sent something (or closed) on `sock`, without waiting."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # a socket with a timeout would wait for data even with MSG_DONTWAIT
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(timeout)
    return True


def fill_every_slot(path: Path) -> list[socket.socket]:
    """Open silent connections until the daemon turns one away (a probe that gets a line
    or is closed); return the connections that hold a slot. One turned away because an
    earlier client's slot was not yet free is replaced."""
    held: list[socket.socket] = []
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(str(path))
        if len(held) < MAX_CLIENTS:
            held.append(sock)
            continue
        sock.settimeout(5)
        try:
            sock.recv(65536)  # the daemon's answer to a client it has no slot for
        except TimeoutError:
            held.append(sock)  # it got a slot: one of `held` was turned away
            continue
        finally:
            if sock not in held:
                sock.close()
        turned_away = [s for s in held if has_data(s)]
        if not turned_away:
            return held
        for stale in turned_away:
            held.remove(stale)
            stale.close()


def wait_for_close(sock: socket.socket, timeout: float) -> bytes:
    """Read until the daemon closes `sock`; return what it sent."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_silent_clients_on_every_slot_get_busy_then_are_dropped(quick: Running) -> None:
    """Regression (issue 23, item 9): 256 connections that never send held every control
    slot for an hour, forge-syncctl then said "lost forge-syncd", and nothing was logged.
    Now, while they are held, `status` exits 3 saying the daemon is busy and why; the daemon
    logs `control_clients_full` once for the burst however many it turns away; once the
    idle limit has dropped the silent clients (each sees the daemon close it, having been
    sent nothing), `status` is served again."""
    log = quick.work / "log" / "forge-syncd.jsonl"
    held = fill_every_slot(quick.socket)
    try:
        for _ in range(2):
            result = quick.ctl("status")
            assert result.returncode == 3, (result.stdout, result.stderr)
            assert result.stderr.strip() == (
                f"forge-syncctl: forge-syncd is busy: all {MAX_CLIENTS} control connections"
                " are in use; try again"
            )
        (answer,) = quick.raw(b'{"id": 5, "method": "hello"}\n')
        assert answer["ok"] is False and answer["error"]["code"] == "busy"  # type: ignore[index]
        full = [r for r in read_log(log) if r["event"] == "control_clients_full"]
        assert len(full) == 1 and full[0]["level"] == "warning"
        for sock in held:
            assert wait_for_close(sock, timeout=QUICK_IDLE_S * 4) == b""
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: quick.ctl("status").returncode == 0, what="status served again")
    events = [r["event"] for r in read_log(log)]
    assert events.count("control_clients_full") == 1
    assert "control_clients_available" in events


def test_a_watch_stream_is_not_dropped_as_idle(quick: Running) -> None:
    """Idle means no request: a `watch` client, which sends nothing after its request,
    keeps getting progress lines after a client that went quiet after one request (opened
    at the same time) has been dropped for idleness."""
    with socket.socket(socket.AF_UNIX) as watcher, socket.socket(socket.AF_UNIX) as quiet:
        watcher.connect(str(quick.socket))
        quiet.connect(str(quick.socket))
        watcher.sendall(b'{"id": 1, "method": "watch"}\n')
        quiet.sendall(b'{"id": 2, "method": "hello"}\n')
        assert b'"ok":true' in wait_for_line(quiet)
        assert wait_for_close(quiet, timeout=QUICK_IDLE_S * 4) == b""
        watcher.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while watcher.recv(65536):  # what came before the quiet client was dropped
                pass
        watcher.settimeout(30)
        assert b'"event":"progress"' in watcher.recv(65536)


def wait_for_line(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    received = b""
    while b"\n" not in received:
        received += sock.recv(65536)
    return received


@pytest.mark.parametrize("param", ["prompt", "model", "lora", "container", "since"])
def test_find_with_a_lone_surrogate_is_bad_params(quick: Running, param: str) -> None:
    """Regression (issue 23, item 10): a `find` whose text holds a lone surrogate (JSON's
    `\\ud800` escape, sent raw) was answered `internal` and logged as an error. It is
    `bad_params`, naming the param; nothing is logged as failed; the connection goes on."""
    line = b'{"id": 9, "method": "find", "params": {"%s": "fox\\ud800"}}\n' % param.encode()
    first, after = quick.raw(line + b'{"id": 10, "method": "hello"}\n', expect_lines=2)
    assert (first["id"], first["ok"]) == (9, False)
    error = first["error"]
    assert error["code"] == "bad_params", error  # type: ignore[index]
    assert param in error["message"] and "not valid Unicode" in error["message"]  # type: ignore[index]
    assert after["ok"] is True
    failed = {"control_request_failed", "catalog_search_failed"}
    assert not [
        r for r in read_log(quick.work / "log" / "forge-syncd.jsonl") if r["event"] in failed
    ]
