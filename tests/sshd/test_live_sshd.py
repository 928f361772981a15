"""Live mode against a real sshd: each remote watcher (inotifywait, the python3 script, the
find detector), both writer patterns, a file still being written, the watcher killed, the
connection dropped, a burst. A container runner in this process plays the daemon."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.library.manifest import Manifest
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.daemon import read_log, wait_until
from tests.support.hostile import disabled, without
from tests.support.sshd import SshdServer

# Over SSH the watcher pushes small files, so python3 (the one that pushes) comes first.
BACKENDS = {
    "inotifywait": ("python3",),
    "python3": (),
    "find": ("inotifywait", "python3"),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SshdServer]]:
    """One sshd per watcher: the tools of the watchers before it are hidden from the
    sessions' PATH (not there at all), plus one where they are there but fail (exit 127)."""
    started = {}
    for backend, missing in BACKENDS.items():
        folder = tmp_path_factory.mktemp(f"sshd-{backend}")
        dirs = [without(folder / "bin", *missing)] if missing else []
        started[backend] = SshdServer(folder / "sshd", path_dirs=dirs, only_path_dirs=True).start()
    folder = tmp_path_factory.mktemp("sshd-broken-tools")
    broken = disabled(folder / "bin", "inotifywait", "python3")
    started["broken"] = SshdServer(folder / "sshd", path_dirs=[broken]).start()
    yield started
    for server in started.values():
        server.stop()


class Live:
    """A container runner with live mode on, syncing `root` into `media`."""

    def __init__(
        self,
        sshd: SshdServer,
        tmp: Path,
        keepalive_s: float = 30.0,
        folders: tuple[str, ...] = (),
        **sync: object,
    ) -> None:
        self.root = tmp / "remote"
        self.media = tmp / "media"
        self.root.mkdir()
        self.media.mkdir()
        sync.setdefault("settle_s", 5.0)
        container = make_container(sshd, self.root, **sync)  # type: ignore[arg-type]
        ssh = dataclasses.replace(container.ssh, keepalive_s=keepalive_s)
        self.container = dataclasses.replace(container, ssh=ssh, folders=folders)
        self.manifest = Manifest.open(tmp / "state")
        self.runner = ContainerRunner(self.container, os.fsencode(self.media), self.manifest)
        self.reconciles = 0

    def start(self) -> Live:
        self.runner.start_watch(self._reconcile)
        wait_until(lambda: self.runner.watch_state == "watching", 30, "the watcher to start")
        return self

    def _reconcile(self) -> None:
        self.reconciles += 1
        threading.Thread(target=self.runner.run, args=("sync",), daemon=True).start()

    def local(self, name: str) -> Path:
        return self.media / "forge-a" / name

    def synced(self, name: str, data: bytes) -> bool:
        path = self.local(name)
        return path.exists() and path.read_bytes() == data

    def runs(self) -> int:
        return len(self.manifest.runs.recent("forge-a", limit=10_000))

    def close(self) -> None:
        self.runner.retire()
        if self.runner.live is not None:
            self.runner.live.join(10)
        self.runner.close()
        self.manifest.close()


@pytest.fixture
def live_for(tmp_path: Path) -> Iterator[list[Live]]:
    made: list[Live] = []
    yield made
    for live in made:
        live.close()


def a1111_write(path: Path, data: bytes) -> None:
    """A1111/Forge: written under a temporary name, then renamed into place."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def comfyui_write(path: Path, data: bytes, pause: float = 0.05) -> None:
    """ComfyUI: the final name written directly, in pieces."""
    with path.open("wb") as out:
        for start in range(0, len(data), max(1, len(data) // 3)):
            out.write(data[start : start + max(1, len(data) // 3)])
            out.flush()
            time.sleep(pause)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_each_watcher_syncs_both_writers_files_without_a_poll(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live], backend: str
) -> None:
    """With an hour-long interval, files written both ways (and in a folder made after the
    watcher started) reach the library through the watcher; the watcher named is the one
    the container has."""
    live = Live(servers[backend], tmp_path)
    live_for.append(live)
    live.start()
    assert live.runner.live is not None and live.runner.live.backend == backend
    wait_until(lambda: "sync" in live.runner.results.last, 30, "the reconciling run")
    a = os.urandom(300_000)
    b = os.urandom(200_000)
    c = os.urandom(1000)
    a1111_write(live.root / "forge.png", a)
    comfyui_write(live.root / "ComfyUI_00001_.png", b)
    (live.root / "2026-12-01").mkdir()
    a1111_write(live.root / "2026-12-01" / "later.png", c)
    wait_until(lambda: live.synced("forge.png", a), 30, "forge.png")
    wait_until(lambda: live.synced("ComfyUI_00001_.png", b), 30, "ComfyUI_00001_.png")
    wait_until(lambda: live.synced("2026-12-01/later.png", c), 30, "later.png")
    assert not any(name.endswith(".tmp") for name in os.listdir(live.local("")))
    log = read_log(tmp_path / "log.jsonl")
    started = [r for r in log if r["event"] == "watch_started"]
    assert started and started[0]["backend"] == backend
    # Synced by the watcher's runs (no listing), not by a poll.
    watched = [p for r in log if r["event"] == "watch_sync" for p in r["paths"]]
    assert {"forge.png", "ComfyUI_00001_.png", "2026-12-01/later.png"} <= set(watched)


@pytest.mark.parametrize("backend", ["inotifywait", "python3"])
def test_a_file_still_being_written_is_not_synced_until_it_is_closed(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live], backend: str
) -> None:
    """ComfyUI's pattern with a long pause mid-file: nothing lands under the final name
    until the writer closes it; then the whole file does."""
    live = Live(servers[backend], tmp_path)
    live_for.append(live)
    live.start()
    target = live.root / "ComfyUI_00002_.png"
    first, rest = os.urandom(100_000), os.urandom(100_000)
    with target.open("wb") as out:
        out.write(first)
        out.flush()
        time.sleep(3.0)  # the watcher has had every chance to (wrongly) act
        assert not live.local("ComfyUI_00002_.png").exists()
        out.write(rest)
    wait_until(lambda: live.synced("ComfyUI_00002_.png", first + rest), 30, "the whole file")


def watcher_pids(root: Path) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"cd -- {root}"], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def process_groups(pids: list[int]) -> set[int]:
    """The process groups of `pids` still alive (a short-lived one may be gone already)."""
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return groups


def test_a_killed_watcher_is_restarted_and_live_mode_goes_on(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    """kill -9 of the remote watcher's whole process group: the channel ends, the daemon
    side notices, starts a new watcher (and reconciles), and new files still arrive."""
    live = Live(servers["python3"], tmp_path)
    live_for.append(live)
    live.start()
    live_watch = live.runner.live
    assert live_watch is not None
    groups = process_groups(watcher_pids(live.root))
    assert groups, "the remote watcher's processes"
    for group in groups:  # one kill may already have ended the next group's processes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, 9)
    wait_until(lambda: live_watch.restarts >= 1, 30, "the restart")
    wait_until(lambda: live.runner.watch_state == "watching", 30, "watching again")
    data = os.urandom(5000)
    a1111_write(live.root / "after-kill.png", data)
    wait_until(lambda: live.synced("after-kill.png", data), 30, "after-kill.png")
    log = read_log(tmp_path / "log.jsonl")
    assert [r["event"] for r in log].count("watch_started") >= 2
    assert any(r["event"] == "watch_stopped" for r in log)


def test_a_dropped_connection_falls_back_to_polling_then_watches_again(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    """The connection closes under the watcher: the container shows `polling` until a new
    connection carries a new watcher; a file written meanwhile is not lost (the reconciling
    run after the restart fetches it)."""
    live = Live(servers["inotifywait"], tmp_path)
    live_for.append(live)
    live.start()
    live_watch = live.runner.live
    assert live_watch is not None
    states: list[str] = []
    live_watch.on_state = states.append
    live.runner.remote.close()
    data = os.urandom(5000)
    a1111_write(live.root / "while-down.png", data)
    wait_until(lambda: "polling" in states, 30, "polling")
    wait_until(lambda: live.runner.watch_state == "watching", 30, "watching again")
    wait_until(lambda: live.synced("while-down.png", data), 30, "while-down.png")
    assert live.reconciles >= 2


def test_a_burst_of_files_becomes_a_few_runs(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    """300 files written as fast as the disk takes them: all arrive, in far fewer runs
    than files (the debounce gathers a burst)."""
    live = Live(servers["python3"], tmp_path)
    live_for.append(live)
    live.start()
    wait_until(lambda: "sync" in live.runner.results.last, 30, "the reconciling run")
    before = live.runs()
    names = {f"burst/{i:04d}.png": os.urandom(2000) for i in range(300)}
    (live.root / "burst").mkdir()
    for name, data in names.items():
        a1111_write(live.root / name, data)
    wait_until(
        lambda: all(live.synced(name, data) for name, data in names.items()), 60, "the burst"
    )
    assert live.runs() - before <= 30


def test_watch_off_starts_no_watcher(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    live = Live(servers["python3"], tmp_path, watch=False)
    live_for.append(live)
    live.runner.start_watch(lambda: None)
    assert live.runner.live is None
    assert live.runner.watch_state == "off"
    assert not watcher_pids(live.root)


def test_between_live_runs_the_next_fetch_shell_is_already_started(
    servers: dict[str, SshdServer],
    tmp_path: Path,
    live_for: list[Live],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While watching, a run leaves the remote tar's shell started and waiting (so the next
    watcher run streams one round trip after it begins); it runs nothing until released:
    a file synced afterwards still arrives whole, through it. (Files over the push limit:
    smaller ones come behind their records, without a fetch.)"""
    monkeypatch.setattr("forge_syncd.transports.ssh.watch.PUSH_MAX", 1000)
    live = Live(servers["python3"], tmp_path)
    live_for.append(live)
    live.start()
    first = os.urandom(50_000)
    a1111_write(live.root / "one.png", first)
    wait_until(lambda: live.synced("one.png", first), 30, "one.png")

    def waiting_tar() -> list[int]:
        found = subprocess.run(
            ["pgrep", "-f", f"read -r _ .*{live.root}.*tar -c"],
            capture_output=True,
            text=True,
            check=False,
        )
        return [int(pid) for pid in found.stdout.split()]

    wait_until(lambda: bool(waiting_tar()), 30, "a waiting tar shell")
    waiting = waiting_tar()
    second = os.urandom(50_000)
    a1111_write(live.root / "two.png", second)
    wait_until(lambda: live.synced("two.png", second), 30, "two.png")
    # The waiting shell was the one used (released, it ran tar and ended); a new one waits.
    wait_until(lambda: not set(waiting) & set(waiting_tar()), 30, "the old shell used")
    wait_until(lambda: bool(waiting_tar()), 30, "the next waiting tar shell")


def test_the_reconciling_run_lists_afresh_not_what_the_watchers_connect_saw(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    """The watcher's connection is the first (its probe lists the container too), made while
    the root does not exist yet; the root appears; once a watcher is established, the
    reconciling full run lists afresh (it must not reuse the listing taken before the
    watches were placed) and succeeds, fetching what was written meanwhile."""
    live = Live(servers["python3"], tmp_path)
    live_for.append(live)
    live.root.rmdir()
    live.runner.start_watch(live._reconcile)
    time.sleep(0.3)
    live.root.mkdir()
    data = os.urandom(4000)
    (live.root / "early.png").write_bytes(data)
    wait_until(lambda: live.runner.watch_state == "watching", 30, "the watcher")
    wait_until(lambda: "sync" in live.runner.results.last, 30, "the reconciling run")
    wait_until(lambda: live.synced("early.png", data), 30, "early.png")
    failed = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "sync_failed"]
    assert failed == []


def test_watchers_that_are_there_but_fail_fall_through_to_the_next(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live]
) -> None:
    """inotifywait and python3 exist but exit at once (127): the script goes on to the find
    detector, and files still arrive."""
    live = Live(servers["broken"], tmp_path)
    live_for.append(live)
    live.start()
    assert live.runner.live is not None and live.runner.live.backend == "find"
    data = os.urandom(3000)
    a1111_write(live.root / "late.png", data)
    wait_until(lambda: live.synced("late.png", data), 30, "late.png")


@pytest.mark.parametrize("backend", ["inotifywait", "python3"])
def test_an_idle_inotify_watcher_is_not_taken_for_dead(
    servers: dict[str, SshdServer], tmp_path: Path, live_for: list[Live], backend: str
) -> None:
    """Nothing changes on the container for several times the silence limit (four
    keepalives of 0.5 s): the watcher says it is alive on its own, so it is never restarted
    (no `watch_stopped`), and a file written afterwards still arrives through it."""
    live = Live(servers[backend], tmp_path, keepalive_s=0.5)
    live_for.append(live)
    live.start()
    live_watch = live.runner.live
    assert live_watch is not None
    time.sleep(6)
    assert live_watch.restarts == 0
    assert live.runner.watch_state == "watching"
    data = os.urandom(2000)
    a1111_write(live.root / "after-idle.png", data)
    wait_until(lambda: live.synced("after-idle.png", data), 30, "after-idle.png")
    assert not [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "watch_stopped"]


def test_keeping_the_fetch_ready_never_opens_a_new_connection(
    servers: dict[str, SshdServer], tmp_path: Path
) -> None:
    """A run that lost its connection ends with `end_run(keep_ready=True)`: nothing is kept
    ready and no connection is attempted there (the next run connects)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    container = make_container(servers["python3"], tmp_path)
    ssh = dataclasses.replace(container.ssh, port=listener.getsockname()[1])
    remote = SshTransport(dataclasses.replace(container, ssh=ssh))
    try:
        remote.end_run(keep_ready=True)
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came
    finally:
        remote.close()
        listener.close()


def test_a_small_file_comes_pushed_behind_its_record_and_a_large_one_is_fetched(
    servers: dict[str, SshdServer],
    tmp_path: Path,
    live_for: list[Live],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over SSH the python3 watcher sends a small written file's bytes behind its record:
    the run that lands it fetches nothing (`fetch_done` says `push`) and the copy is byte
    for byte the file, recorded with its sha256; a file over the push limit is fetched by
    the tar stream as before."""
    monkeypatch.setattr("forge_syncd.transports.ssh.watch.PUSH_MAX", 100_000)
    live = Live(servers["python3"], tmp_path)
    live_for.append(live)
    live.start()
    wait_until(lambda: "sync" in live.runner.results.last, 30, "the reconciling run")
    small, large = os.urandom(60_000), os.urandom(250_000)
    a1111_write(live.root / "small.png", small)
    wait_until(lambda: live.synced("small.png", small), 30, "small.png")
    comfyui_write(live.root / "large.png", large)
    wait_until(lambda: live.synced("large.png", large), 30, "large.png")
    log = read_log(tmp_path / "log.jsonl")
    transfers = [r["transfer"] for r in log if r["event"] == "fetch_done"]
    assert "push" in transfers and "tar" in transfers, transfers
    row = live.manifest.files.records("forge-a")[b"small.png"]
    assert row.sha256 == hashlib.sha256(small).hexdigest() and not row.recheck
