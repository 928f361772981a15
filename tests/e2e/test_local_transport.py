"""`transport: local` end to end, on the real daemon: a folder of this machine is synced like
a container (byte-identical files with their mtimes, hostile names included), status says
`"transport": "local"`, a cleanup purges only what the library holds verified, and kill -9
in the middle of a run loses nothing and leaves no partial file under its final name."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.control.client import ControlClient
from forge_syncd.paths import TEMP_NAME
from tests.support.cli import BIN, forge_syncd
from tests.support.daemon import wait_until
from tests.support.faults import sigkill, spawn_daemon, temp_files
from tests.support.trees import HOSTILE_NAMES, tree_files, write_file

OLD = 1_700_000_000.0  # far older than older_than


def local_config(work: Path, source: Path, extra: str = "") -> Path:
    """Write a config with one container `nas-forge` whose files are in `source`."""
    path = work / "forge-sync.yaml"
    path.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
containers:
  - name: nas-forge
    transport: local
    kind: generic
    root: {source}
    sync: {{settle: 0s, interval: 1h{extra}}}
    cleanup: {{enabled: true, older_than: 1h, interval: 24h}}
"""
    )
    return path


def final_files(library: Path) -> dict[bytes, tuple[bytes, int]]:
    """Return what the library holds under final names (not temporary ones)."""
    return {
        path: held
        for path, held in tree_files(library).items()
        if not TEMP_NAME.match(os.path.basename(path))
    }


def status(socket: Path) -> dict[str, object]:
    with ControlClient(socket) as client:
        answer = client.call("status", {}, timeout=60)
    assert isinstance(answer, dict)
    (container,) = answer["containers"]
    assert isinstance(container, dict)
    return container


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """A daemon syncing a source folder with hostile names (old mtimes: purgeable)."""
    source = tmp_path / "outputs"
    for n, name in enumerate(HOSTILE_NAMES):
        for folder in (b"", b"day 1/"):
            path = os.path.join(os.fsencode(source), folder + name + b".png")
            write_file(path, os.urandom(1000 + n * 3000), OLD + n)
    process = spawn_daemon(local_config(tmp_path, source, ", watch: false"), tmp_path / "stderr")
    yield tmp_path, source, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_a_local_folder_syncs_byte_identical_and_cleanup_purges_only_verified_files(
    running: tuple[Path, Path, subprocess.Popen[bytes]],
) -> None:
    """Every file of the source lands in the library under its exact name with its bytes
    and mtime; status carries `"transport": "local"`; `forge-syncctl cleanup` deletes from
    the source exactly the files the library holds (a file written after the sync stays),
    and the library keeps them all; nothing is renamed out of the source."""
    work, source, _process = running
    library = work / "media" / "nas-forge"
    socket = work / "run" / "control.sock"
    synced = tree_files(source)
    wait_until(lambda: tree_files(library) == synced, 60, "the first sync")
    wait_until(lambda: status(socket)["state"] == "idle", 60, "the sync to finish")
    assert status(socket)["transport"] == "local"
    write_file(source / "after" / "late.png", b"not synced yet", OLD)
    result = subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(socket), "cleanup", "nas-forge"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    left = {b"after/late.png": (b"not synced yet", int(OLD) * 10**9)}
    wait_until(lambda: status(socket)["last_cleanup"] is not None, 60, "the cleanup")
    wait_until(lambda: status(socket)["state"] == "idle", 60, "the cleanup to finish")
    assert tree_files(source) == left
    assert tree_files(library) == synced
    assert temp_files(library) == []


def test_kill_9_mid_run_loses_nothing_and_leaves_no_partial_file(tmp_path: Path) -> None:
    """kill -9 of the daemon while it copies a local folder (slowed by bwlimit, so the kill
    lands mid-run): every file already under its final name is byte-identical with its
    mtime; the next daemon completes the library, removes the dead run's temporary files,
    and the source is untouched (no cleanup is due: nothing is purged, nothing moved)."""
    source = tmp_path / "outputs"
    for n in range(60):
        write_file(source / f"{n % 4}" / f"{n:03d}.png", os.urandom(1_000_000 + n), OLD + n)
    original = tree_files(source)
    library = tmp_path / "media" / "nas-forge"
    config = local_config(tmp_path, source, ", watch: false, bwlimit: 10MiB/s")
    first = spawn_daemon(config, tmp_path / "stderr")
    try:
        wait_until(lambda: len(final_files(library)) >= 5, 60, "the copy to be under way")
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


def test_live_mode_copies_a_file_written_in_the_folder_without_waiting_for_the_poll(
    tmp_path: Path,
) -> None:
    """With `watch` on (the default) and an hourly poll, a file written into the local
    folder after the first sync is copied by live mode (inotify on this machine), byte
    identical with its mtime, and status says the container is watched."""
    source = tmp_path / "outputs"
    write_file(source / "first.png", b"there at start", OLD)
    process = spawn_daemon(local_config(tmp_path, source), tmp_path / "stderr")
    library = tmp_path / "media" / "nas-forge"
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the first sync")
        wait_until(lambda: status(socket)["watch"] == "watching", 60, "the watcher")
        write_file(source / "day" / "live.png", b"written while watched", OLD + 7)
        wait_until(lambda: tree_files(library) == tree_files(source), 60, "the live copy")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_drain_with_purge_on_a_local_folder_empties_it_only_of_verified_files(
    tmp_path: Path,
) -> None:
    """`forge-syncd --once --drain --purge` on a local container syncs, says the folder is
    safe to destroy with every file verified, and purges the source; a library copy that
    rotted afterwards (same size and mtime, other bytes) makes the next drain refuse that
    file (`bytes_differ`) and keep it in the source."""
    source = tmp_path / "outputs"
    for name in ("a.png", "day/b.png", "day/c.mp4"):
        write_file(source / name, os.urandom(30_000), OLD)
    config = local_config(tmp_path, source, ", watch: false")

    def drain(*extra: str) -> subprocess.CompletedProcess[str]:
        return forge_syncd(
            "--once", "--drain", "--container", "nas-forge", "--config", str(config), *extra
        )

    synced = tree_files(source)
    result = drain()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nas-forge: safe to destroy: 3 files, 87.9 KiB verified" in result.stdout
    assert tree_files(tmp_path / "media" / "nas-forge") == synced
    write_file(source / "late.png", b"L" * 1000, OLD)
    assert drain().returncode == 0
    library_copy = tmp_path / "media" / "nas-forge" / "late.png"
    library_copy.write_bytes(b"R" * 1000)
    os.utime(library_copy, (OLD, OLD))
    result = drain("--purge")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "late.png" in result.stdout
    assert tree_files(source) == {b"late.png": (b"L" * 1000, int(OLD) * 10**9)}
