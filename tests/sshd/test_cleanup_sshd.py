"""Cleanup against a real sshd: only verified copies are purged, hostile names included."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.cleanup import cleanup_container
from forge_syncd.config.model import CleanupConfig, ContainerConfig
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.trees import HOSTILE_NAMES, tree_files, write_file

OLD = 1_700_000_000


def with_cleanup(container: ContainerConfig, **cleanup: Any) -> ContainerConfig:
    config = dataclasses.replace(CleanupConfig(enabled=True, older_than_s=3600.0), **cleanup)
    return dataclasses.replace(container, cleanup=config)


def sync_then_clean(container: ContainerConfig, tmp_path: Path, **kw: Any) -> RunOutcome:
    manifest = Manifest.open(tmp_path / "state")
    remote = SshTransport(container)
    ctx = context(container, tmp_path / "media", manifest, remote)
    try:
        if kw.pop("sync", True):
            assert sync_container(ctx).result == "success"
        if "before_cleanup" in kw:
            kw.pop("before_cleanup")()
        return cleanup_container(ctx, **kw)
    finally:
        remote.close()
        manifest.close()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    remote = tmp_path / "remote"
    (tmp_path / "state").mkdir()
    write_file(remote / "old" / "a.png", b"a" * 100, OLD)
    write_file(remote / "old" / "favorite.png", b"f" * 100, OLD)
    write_file(remote / "old" / "notes.md", b"not media", OLD)
    write_file(remote / "young.png", b"y" * 100, time.time() - 5)
    for name in HOSTILE_NAMES:
        write_file(os.path.join(os.fsencode(remote / "hostile"), name), b"h" + name, OLD)
    write_file(remote / "hostile" / "-rf", b"sentinel a spliced name would hit", time.time())
    write_file(remote / "hostile" / "PWNED", b"", time.time())
    (remote / "hostile" / "PWNED").unlink()
    return remote


def test_old_synced_files_go_and_everything_else_stays(
    sshd: SshdServer, tmp_path: Path, tree: Path
) -> None:
    """Old synced files (hostile names included) are purged and recorded; young, preserved
    and non-included files stay; the local copies stay; nothing was executed."""
    container = with_cleanup(make_container(sshd, tree), preserve=("*favorite*",))
    outcome = sync_then_clean(container, tmp_path)
    assert outcome.result == "success", outcome.error
    left = sorted(tree_files(tree))
    assert left == [b"hostile/-rf", b"old/favorite.png", b"old/notes.md", b"young.png"]
    assert outcome.files == 1 + len(HOSTILE_NAMES)
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    local = tree_files(tmp_path / "media" / "forge-a")
    assert b"old/a.png" in local and all(b"hostile/" + n in local for n in HOSTILE_NAMES)
    records = Manifest.open(tmp_path / "state").files.records("forge-a")
    assert records[b"old/a.png"].state == "purged"
    assert records[b"old/favorite.png"].state == "synced"
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    kept = {e["path"]: e["reason"] for e in events if e["event"] == "file_kept"}
    assert kept == {"old/favorite.png": "preserved"}
    purged = [e for e in events if e["event"] == "file_purged"]
    assert len(purged) == outcome.files


def test_truncated_local_copy_blocks_deletion(sshd: SshdServer, tmp_path: Path, tree: Path) -> None:
    """A local copy that lost bytes keeps its remote file (local_copy_differs)."""
    container = with_cleanup(make_container(sshd, tree))
    local = tmp_path / "media" / "forge-a" / "old" / "a.png"
    outcome = sync_then_clean(
        container, tmp_path, before_cleanup=lambda: local.write_bytes(b"a" * 10)
    )
    assert (tree / "old" / "a.png").exists()
    decisions = {d["path"]: d for d in outcome.cleanup.decisions}
    assert decisions["old/a.png"]["reason"] == "local_copy_differs"


def test_sha256_mode_blocks_a_same_size_altered_copy(
    sshd: SshdServer, tmp_path: Path, tree: Path
) -> None:
    """Under verify: sha256 a local copy with the right size but other bytes blocks purge."""
    container = with_cleanup(make_container(sshd, tree, verify="sha256"))
    local = tmp_path / "media" / "forge-a" / "old" / "a.png"
    outcome = sync_then_clean(
        container, tmp_path, before_cleanup=lambda: local.write_bytes(b"b" * 100)
    )
    assert (tree / "old" / "a.png").exists()
    assert not (tree / "old" / "favorite.png").exists()
    assert outcome.files == 1 + len(HOSTILE_NAMES)


def test_dry_run_deletes_nothing_and_lists_what_would_go(
    sshd: SshdServer, tmp_path: Path, tree: Path
) -> None:
    """dry_run lists exactly the files a real run purges, and deletes none."""
    before = tree_files(tree)
    container = with_cleanup(make_container(sshd, tree))
    dry = sync_then_clean(container, tmp_path, dry_run=True)
    assert tree_files(tree) == before and dry.files == 0
    would = {d["path"] for d in dry.cleanup.decisions if d["action"] == "purge"}
    real = sync_then_clean(container, tmp_path, sync=False)
    gone = {p.decode("utf-8", "backslashreplace") for p in set(before) - set(tree_files(tree))}
    assert would == gone and real.files == len(would)


def test_sftp_fallback_deletes_the_same_files(sshd: SshdServer, tmp_path: Path, tree: Path) -> None:
    """A remote without find/xargs/stat is purged over SFTP with the same result."""
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    for tool in ("find", "xargs", "stat", "sha256sum"):
        (fakebin / tool).write_text("#!/bin/sh\nexit 127\n")
        (fakebin / tool).chmod(0o755)
    bare = SshdServer(tmp_path / "bare", path_dirs=[fakebin]).start()
    try:
        container = with_cleanup(make_container(bare, tree), preserve=("*favorite*",))
        outcome = sync_then_clean(container, tmp_path)
    finally:
        bare.stop()
    assert outcome.result == "success"
    assert sorted(tree_files(tree)) == [
        b"hostile/-rf",
        b"old/favorite.png",
        b"old/notes.md",
        b"young.png",
    ]


def test_purged_files_are_not_fetched_again(sshd: SshdServer, tmp_path: Path, tree: Path) -> None:
    """After a purge, the next sync transfers nothing and the local copies stay."""
    container = with_cleanup(make_container(sshd, tree))
    sync_then_clean(container, tmp_path)
    before = tree_files(tmp_path / "media" / "forge-a")
    manifest = Manifest.open(tmp_path / "state")
    remote = SshTransport(container)
    try:
        again = sync_container(context(container, tmp_path / "media", manifest, remote))
    finally:
        remote.close()
    assert again.files == 0
    assert tree_files(tmp_path / "media" / "forge-a") == before
