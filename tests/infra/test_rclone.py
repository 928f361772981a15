"""The rclone fixtures (tests/support/rclone.py): copies to a local-folder remote and to an
SFTP remote on the test sshd land byte for byte with the hashes each remote can make, and the
remote-control daemon copies too and stops by PID."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tests.support import rclone
from tests.support.rclone import RcloneDaemon, Remotes


def source_file(tmp_path: Path, name: str = "image 1.png") -> tuple[Path, bytes]:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(300_000)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def test_copyto_the_local_folder_remote_with_sha256(
    rclone_remotes: Remotes, tmp_path: Path
) -> None:
    """`copyto nas:forge-media/...` writes the file under the alias's folder; `lsjson --hash`
    and `hashsum sha256` give its SHA-256."""
    source, data = source_file(tmp_path)
    cli = rclone_remotes.cli
    cli.copyto(source, "nas:forge-media/2026-11-01/image 1.png")
    landed = rclone_remotes.nas_root / "forge-media" / "2026-11-01" / "image 1.png"
    assert landed.read_bytes() == data
    digest = hashlib.sha256(data).hexdigest()
    assert "sha256" in rclone.features(cli, "nas:")["Hashes"]
    (entry,) = cli.lsjson("nas:forge-media")
    assert entry["Path"] == "2026-11-01/image 1.png" and entry["Size"] == len(data)
    assert entry["Hashes"]["sha256"] == digest
    assert cli.hashsum("sha256", "nas:forge-media") == {"2026-11-01/image 1.png": digest}


def test_copyto_the_sftp_remote_with_the_hashes_it_has(
    rclone_remotes: Remotes, tmp_path: Path
) -> None:
    """`copyto sftpnas:...` reaches the folder on the test sshd (host key checked); the
    hashes the SFTP backend lists (MD5 and SHA-1 by running md5sum/sha1sum on the server)
    match the file's."""
    source, data = source_file(tmp_path)
    cli = rclone_remotes.cli
    cli.copyto(source, "sftpnas:forge-media/image 1.png")
    assert (rclone_remotes.sftp_root / "forge-media" / "image 1.png").read_bytes() == data
    hashes = rclone.features(cli, "box:")["Hashes"]
    assert {"md5", "sha1"} <= set(hashes)
    (entry,) = cli.lsjson("sftpnas:forge-media")
    for kind in hashes:
        if kind in hashlib.algorithms_guaranteed:
            assert entry["Hashes"][kind] == hashlib.new(kind, data).hexdigest()
    assert cli.hashsum("sha1", "sftpnas:forge-media") == {
        "image 1.png": hashlib.sha1(data).hexdigest()  # noqa: S324
    }


def test_the_rc_daemon_copies_to_both_remotes_and_stops_by_pid(
    rclone_remotes: Remotes, tmp_path: Path
) -> None:
    """`rclone rcd` answers `core/version`, `operations/copyfile` copies to the local and the
    SFTP remote, and `stop()` ends the process."""
    _source, data = source_file(tmp_path, "a.png")
    daemon = RcloneDaemon(rclone_remotes.cli.config).start()
    try:
        assert daemon.call("core/version")["version"].startswith("v1.")
        for remote in ("nas:", "sftpnas:"):
            daemon.call(
                "operations/copyfile",
                srcFs=str(tmp_path),
                srcRemote="a.png",
                dstFs=remote,
                dstRemote="rc/a.png",
            )
        assert (rclone_remotes.nas_root / "rc" / "a.png").read_bytes() == data
        assert (rclone_remotes.sftp_root / "rc" / "a.png").read_bytes() == data
        process = daemon.process
        assert process is not None
    finally:
        daemon.stop()
    assert process.poll() is not None and daemon.process is None
