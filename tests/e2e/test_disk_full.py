"""A library on a small filesystem: a run that would fill the disk fails cleanly."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.library.manifest import Manifest
from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


def mount_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (needs root and mount permission; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs."""
    yield from mount_tmpfs(tmp_path, "16m")


@pytest.fixture
def filling_disk(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB tmpfs: room for a small sync and the reserve, until something else fills it."""
    yield from mount_tmpfs(tmp_path, "96m")


def test_a_sync_that_would_fill_the_disk_fails_before_writing_and_purges_nothing(
    sshd: SshdServer, tmp_path: Path, small_disk: Path
) -> None:
    """With less free space than the files plus the 64 MiB reserve, the sync fails with
    `disk_full` before writing anything, the manifest records nothing, no temporary file is
    left, and the cleanup of that container does not run."""
    remote = tmp_path / "remote"
    write_file(remote / "old.png", os.urandom(1_000_000), 1.7e9)
    config = write_config(tmp_path, sshd, remote)
    config.write_text(
        config.read_text()
        .replace(f"media_root: {tmp_path}/media", f"media_root: {small_disk}")
        .replace("    ssh: {port:", "    cleanup: {enabled: true, older_than: 1h}\n    ssh: {port:")
    )
    result = forge_syncd("--once", "--config", str(config))
    assert result.returncode == 1
    assert "forge-a: sync failure" in result.stdout and "(disk_full:" in result.stdout
    assert "forge-a: cleanup failure" in result.stdout
    assert tree_files(small_disk) == {}
    assert (remote / "old.png").exists()
    assert Manifest.open(tmp_path / "state").files.records("forge-a") == {}


def fill(folder: Path) -> Path:
    """Write zeros into `folder`/filler until the filesystem is full; return the filler."""
    filler = folder / "filler"
    block = bytes(1024 * 1024)
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(block)
                handle.flush()
        except OSError:
            pass
    return filler


def temp_names(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".fs-*")]


def test_a_disk_that_fills_mid_run_fails_cleanly_and_recovers_once_freed(
    sshd: SshdServer, tmp_path: Path, filling_disk: Path
) -> None:
    """The library's disk fills while files are being written (another writer takes the
    space once the first temporary file appears): the run fails with `disk_full`, every
    file under a final name is whole, no temporary file is left, the manifest records only
    whole files, nothing is purged from the container; once space is freed the next run
    completes and only then does cleanup purge."""
    remote = tmp_path / "remote"
    originals = {f"img-{i:02}.png": os.urandom(2 * 1024 * 1024) for i in range(12)}
    for name, data in originals.items():
        write_file(remote / name, data, 1.7e9)
    config = write_config(tmp_path, sshd, remote, bwlimit="4MiB/s")
    config.write_text(
        config.read_text()
        .replace(f"media_root: {tmp_path}/media", f"media_root: {filling_disk}")
        .replace("    ssh: {port:", "    cleanup: {enabled: true, older_than: 1h}\n    ssh: {port:")
    )
    library = filling_disk / "forge-a"
    run = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--once", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FORGE_SYNC_CONFIG": ""},
    )
    try:
        wait_until(lambda: bool(library.is_dir() and temp_names(library)), 60, "a temp file")
        filler = fill(filling_disk)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, out + err
    assert "forge-a: sync failure" in out and "(disk_full:" in out, out
    assert "forge-a: cleanup failure" in out, out
    assert "Traceback" not in err
    assert temp_names(library) == []
    landed = {p.name: p.read_bytes() for p in library.iterdir()}
    assert len(landed) < len(originals)
    assert all(originals[name] == data for name, data in landed.items())
    records = Manifest.open(tmp_path / "state").files.records("forge-a")
    assert {os.fsdecode(path) for path in records if records[path].state == "synced"} == set(landed)
    assert sorted(p.name for p in remote.iterdir()) == sorted(originals)

    filler.unlink()
    again = forge_syncd("--once", "--config", str(config))
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p.name: p.read_bytes() for p in library.iterdir()} == originals
    assert list(remote.iterdir()) == []  # purged only now, each with a whole local copy
