"""A library on a small filesystem: a run that would fill the disk fails cleanly."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.manifest import Manifest
from tests.support.cli import forge_syncd, write_config
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


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
    assert Manifest.open(tmp_path / "state").records("forge-a") == {}
