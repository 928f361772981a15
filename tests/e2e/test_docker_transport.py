"""`transport: docker` end to end, on the real daemon and a real Docker engine (the private
dockerd of `tests/support/docker.py`): a container's folder is synced byte-identical with
its mtimes (hostile names included), status says `"transport": "docker"`, a stopped
container is `unreachable` with the engine's message and syncs again once started, and
kill -9 in the middle of a run loses nothing and leaves no partial file under its final
name."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from forge_syncd.control.client import ControlClient
from forge_syncd.paths import TEMP_NAME
from tests.support.cli import forge_syncd
from tests.support.daemon import wait_until
from tests.support.docker import Container, DockerEngine
from tests.support.faults import sigkill, spawn_daemon, temp_files
from tests.support.trees import HOSTILE_NAMES, tree_files, write_file

OLD = 1_700_000_000.0


def docker_config(work: Path, engine: DockerEngine, container: str, extra: str = "") -> Path:
    """Write a config with one container `home-comfy` reached through `engine`."""
    path = work / "forge-sync.yaml"
    path.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
containers:
  - name: home-comfy
    transport: docker
    container: {container}
    kind: generic
    root: /data
    docker: {{host: "{engine.host}", user: root}}
    sync: {{settle: 0s, interval: 2s{extra}}}
"""
    )
    return path


def status(socket: Path) -> dict[str, object]:
    with ControlClient(socket) as client:
        answer = client.call("status", {}, timeout=60)
    assert isinstance(answer, dict)
    (container,) = answer["containers"]
    assert isinstance(container, dict)
    return container


def final_files(library: Path) -> dict[bytes, tuple[bytes, int]]:
    return {
        path: held
        for path, held in tree_files(library).items()
        if not TEMP_NAME.match(os.path.basename(path))
    }


def test_a_container_syncs_byte_identical_and_a_stopped_one_is_unreachable(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """Every file of the container's folder lands in the library under its exact name with
    its bytes and mtime; status carries `"transport": "docker"`; once the container is
    stopped the next poll shows it `unreachable` with the engine's words, and a file
    written while it was down arrives once it runs again."""
    source = tmp_path / "outputs"
    for n, name in enumerate(HOSTILE_NAMES):
        for folder in (b"", b"day 1/"):
            path = os.path.join(os.fsencode(source), folder + name + b".png")
            write_file(path, os.urandom(1000 + n * 3000), OLD + n)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    config = docker_config(tmp_path, docker_engine, box.name, ", watch: false")
    process = spawn_daemon(config, tmp_path / "stderr")
    library = tmp_path / "media" / "home-comfy"
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the first sync")
        assert status(socket)["transport"] == "docker"
        box.stop()
        wait_until(lambda: status(socket)["state"] == "unreachable", 60, "unreachable")
        last = status(socket)["last_sync"]
        assert isinstance(last, dict) and "is not running" in str(last), last
        write_file(source / "late.png", b"written while stopped", OLD)
        box.start()
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the sync after")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert temp_files(library) == []
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_kill_9_mid_run_loses_nothing_and_leaves_no_partial_file(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """kill -9 of the daemon while it fetches from a container (slowed by bwlimit, so the
    kill lands mid-run): every file under its final name is byte-identical with its mtime;
    the next daemon completes the library and removes the dead run's temporary files; the
    container's files are untouched."""
    source = tmp_path / "outputs"
    for n in range(60):
        write_file(source / f"{n % 4}" / f"{n:03d}.png", os.urandom(1_000_000 + n), OLD + n)
    original = tree_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    config = docker_config(tmp_path, docker_engine, box.name, ", watch: false, bwlimit: 10MiB/s")
    library = tmp_path / "media" / "home-comfy"
    first = spawn_daemon(config, tmp_path / "stderr")
    try:
        wait_until(lambda: len(final_files(library)) >= 5, 60, "the fetch to be under way")
    finally:
        sigkill(first)
    landed = final_files(library)
    assert 5 <= len(landed) < len(original), "the kill did not land mid-run"
    assert all(original[path] == held for path, held in landed.items())
    second = spawn_daemon(config, tmp_path / "stderr")
    try:
        wait_until(lambda: tree_files(library) == original, 120, "the resumed sync")
        wait_until(lambda: temp_files(library) == [], 60, "the dead run's temporary files")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert tree_files(source) == original
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_live_mode_copies_a_file_written_in_the_container_without_waiting_for_the_poll(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """With `watch` on and an hourly poll, a file written inside the container after the
    first sync is copied by live mode (the watcher script on an exec stream: python3's
    inotify in this image), byte-identical, and status says the container is watched."""
    source = tmp_path / "outputs"
    write_file(source / "first.png", b"there at start", OLD)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    config = docker_config(tmp_path, docker_engine, box.name)
    config.write_text(config.read_text().replace("interval: 2s", "interval: 1h"))
    process = spawn_daemon(config, tmp_path / "stderr")
    library = tmp_path / "media" / "home-comfy"
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the first sync")
        wait_until(lambda: status(socket)["watch"] == "watching", 60, "the watcher")
        box.sh("mkdir -p /data/day && printf 'written in the container' > /data/day/live.png")
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the live copy")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_drain_with_purge_empties_the_container_only_of_verified_files(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """`forge-syncd --once --drain --purge` on a busybox container (the fallbacks: archive
    endpoint, checked deletes) syncs, verifies and purges every file from the container;
    the library keeps them all byte-identical."""
    source = tmp_path / "outputs"
    for name in ("a.png", "day/b.png", "day/c.mp4"):
        write_file(source / name, os.urandom(30_000), OLD)
    synced = tree_files(source)
    box = docker_run(docker_engine.busybox_image(), binds={source: "/data"})
    config = docker_config(tmp_path, docker_engine, box.name, ", watch: false")
    result = forge_syncd(
        "--once", "--drain", "--purge", "--container", "home-comfy", "--config", str(config)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert tree_files(tmp_path / "media" / "home-comfy") == synced
    assert tree_files(source) == {}
