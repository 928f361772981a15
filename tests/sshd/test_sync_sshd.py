"""One-shot sync against a real sshd with real files on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from forge_syncd.library.manifest import Manifest
from tests.conftest import make_container
from tests.support.hostile import disabled, growing_after_listing
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer
from tests.support.trees import (
    HOSTILE_NAMES,
    expected_forge_files,
    forge_tree,
    tree_files,
    write_file,
)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    for folder in (remote, media, state):
        folder.mkdir()
    return remote, media, state


def test_forge_tree_syncs_byte_identical_with_mtimes(
    sshd: SshdServer, dirs: tuple[Path, Path, Path]
) -> None:
    """Real fixtures, generated files and hostile names arrive byte-identical with their
    mtimes; links, FIFOs, symlinked folders, stray folders and non-media are not synced; no
    name runs anything."""
    remote, media, state = dirs
    forge_tree(remote)
    container = make_container(sshd, remote, kind="forge")
    outcome = run_sync(container, media, state)
    assert outcome.result == "success", outcome.error
    assert outcome.sync.listing == "find"
    got = tree_files(media / "forge-a")
    want = expected_forge_files(remote)
    assert got == want
    assert outcome.files == len(want)
    for name in HOSTILE_NAMES:
        assert b"img2img-images/hostile/" + name in got
    assert b"txt2img-images/2026-11-24/automatic1111_cropped.png" in got
    assert not any(b"secret" in path or b"fifo" in path for path in got)
    assert not list(Path("/").glob("PWNED*")) and not list(Path.home().glob("PWNED*"))
    assert not list(remote.rglob("PWNED*"))


def test_second_run_transfers_nothing_and_changes_are_fetched(
    sshd: SshdServer, dirs: tuple[Path, Path, Path]
) -> None:
    """An unchanged file is never transferred twice; a changed one and a locally deleted
    one are fetched again."""
    remote, media, state = dirs
    forge_tree(remote)
    container = make_container(sshd, remote, kind="forge")
    first = run_sync(container, media, state)
    assert first.files > 10
    assert run_sync(container, media, state).files == 0
    changed = remote / "txt2img-images" / "2026-11-24" / "00000-1234.txt"
    write_file(changed, b"rewritten prompt, longer than before\n", 1_700_000_500)
    deleted = media / "forge-a" / "txt2img-images" / "2026-11-24" / "automatic1111_cropped.png"
    deleted.unlink()
    again = run_sync(container, media, state)
    assert again.files == 2
    assert tree_files(media / "forge-a") == expected_forge_files(remote)


def test_sftp_walk_fallback_gives_the_same_tree(
    sshd: SshdServer, dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A remote without GNU find (and without sha256sum) is listed by an SFTP walk and
    yields the identical tree, hostile names included."""
    remote, media, state = dirs
    forge_tree(remote)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    for tool in ("find", "sha256sum"):
        (fakebin / tool).write_text('#!/bin/sh\necho "$0: not found" >&2\nexit 127\n')
        (fakebin / tool).chmod(0o755)
    bare = SshdServer(tmp_path / "bare-sshd", path_dirs=[fakebin]).start()
    try:
        container = make_container(bare, remote, kind="forge", verify="sha256")
        outcome = run_sync(container, media, state)
    finally:
        bare.stop()
    assert outcome.result == "success", outcome.error
    assert outcome.sync.listing == "sftp"
    assert tree_files(media / "forge-a") == expected_forge_files(remote)


def test_sha256_verify_records_hashes(sshd: SshdServer, dirs: tuple[Path, Path, Path]) -> None:
    """With verify: sha256 the remote computes hashes and the manifest records them."""
    remote, media, state = dirs
    write_file(remote / "a.png", b"\x89PNG hello", 1_700_000_000)
    write_file(remote / "sub dir" / "b c.png", b"\x89PNG other", 1_700_000_000)
    container = make_container(sshd, remote, verify="sha256")
    assert run_sync(container, media, state).files == 2
    records = Manifest.open(state).files.records("forge-a")
    import hashlib

    assert records[b"a.png"].sha256 == hashlib.sha256(b"\x89PNG hello").hexdigest()
    assert records[b"sub dir/b c.png"].sha256 == hashlib.sha256(b"\x89PNG other").hexdigest()


def test_settling_and_oversized_files_are_skipped(
    sshd: SshdServer, dirs: tuple[Path, Path, Path]
) -> None:
    """A file modified within `settle` waits for a later run; one over max_file_size is
    skipped."""
    remote, media, state = dirs
    write_file(remote / "old.png", b"x" * 100, 1_700_000_000)
    write_file(remote / "fresh.png", b"y" * 100)
    write_file(remote / "huge.png", b"z" * 5000, 1_700_000_000)
    container = make_container(sshd, remote, settle_s=60.0, max_file_size=1000)
    outcome = run_sync(container, media, state)
    assert sorted(tree_files(media / "forge-a")) == [b"old.png"]
    assert outcome.files == 1


def test_existing_local_copy_is_adopted_without_transfer(
    sshd: SshdServer, dirs: tuple[Path, Path, Path]
) -> None:
    """A library first filled by rsync -a (same size and mtime) is adopted, not re-copied."""
    remote, media, state = dirs
    write_file(remote / "a.png", b"remote bytes", 1_700_000_000)
    write_file(media / "forge-a" / "a.png", b"local  bytes", 1_700_000_000)
    outcome = run_sync(make_container(sshd, remote), media, state)
    assert outcome.files == 0
    assert (media / "forge-a" / "a.png").read_bytes() == b"local  bytes"
    assert b"a.png" in Manifest.open(state).files.records("forge-a")


def test_file_changing_during_transfer_is_discarded_then_fetched(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A file that grows after it was listed (the remote `find` appends to it) never lands
    in that run, on the tar path (tar's header no longer matches the listing; the SFTP
    fallback reads one byte past the listed size); the next, quiet run fetches it whole."""
    remote, media, state = dirs
    big = remote / "growing.mp4"
    write_file(big, b"v" * (3 * 1024 * 1024), 1_700_000_000)
    fakes = growing_after_listing(tmp_path / "bin", big, b"more frames")
    server = SshdServer(tmp_path / "sshd", path_dirs=[fakes]).start()
    try:
        container = make_container(server, remote)
        outcome = run_sync(container, media, state)
        assert outcome.files == 0 and outcome.sync.transfer == "tar"
        assert not (media / "forge-a" / "growing.mp4").exists()
        assert not [p for p in (media / "forge-a").iterdir() if p.name.startswith(".")]
        (fakes / "find").unlink()
        assert run_sync(container, media, state).files == 1
    finally:
        server.stop()
    assert (media / "forge-a" / "growing.mp4").read_bytes() == big.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("tools", ["find+tar", "sftp only"])
def test_a_file_over_1_gib_survives_server_driven_rekeys(
    tmp_path: Path, dirs: tuple[Path, Path, Path], tools: str
) -> None:
    """A 1 GiB + 1 MiB file (sparse on the remote) through an sshd that rekeys every 128 MiB
    (`RekeyLimit`): paramiko's own rekeying is off, so the server drives ~8 rekeys mid-stream
    (paramiko#822 raced on its own); the file arrives whole, on the tar and the SFTP path."""
    remote, media, state = dirs
    big = remote / "video.mp4"
    with open(big, "wb") as handle:
        handle.truncate(2**30 + 2**20)
        handle.seek(2**29)
        handle.write(b"middle")
    os.utime(big, (1_700_000_000, 1_700_000_000))
    fakes = tmp_path / "bin"
    if tools == "sftp only":
        disabled(fakes, "tar")
    server = SshdServer(
        tmp_path / "sshd", path_dirs=[fakes], extra_config=["RekeyLimit 128M"]
    ).start()
    try:
        outcome = run_sync(make_container(server, remote), media, state)
    finally:
        server.stop()
    assert outcome.result == "success", outcome.error
    assert outcome.sync.transfer == ("tar" if tools == "find+tar" else "sftp")
    local = media / "forge-a" / "video.mp4"
    assert local.stat().st_size == 2**30 + 2**20
    assert file_sha256(local) == file_sha256(big)
    assert int(local.stat().st_mtime) == 1_700_000_000


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
