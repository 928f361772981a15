"""`forge-syncd --once --drain` and `forge-syncctl drain` against a real sshd: a box is
called safe to destroy only when every remote file in scope has a verified library copy;
everything else is listed with why; `--purge` deletes only verified files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import write_file

OLD = 1.7e9


def drain(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return forge_syncd(
        "--once", "--drain", "--container", "forge-a", "--config", str(config), *extra
    )


def test_a_fully_synced_box_is_safe_to_destroy(sshd: SshdServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    for name in ("a.png", "day/b.png", "day/c.mp4"):
        write_file(remote / name, os.urandom(30_000), OLD)
    config = write_config(tmp_path, sshd, remote)
    result = drain(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forge-a: safe to destroy: 3 files, 87.9 KiB verified" in result.stdout
    # The final sync is what copied them: the library holds every file.
    for name in ("a.png", "day/b.png", "day/c.mp4"):
        assert (tmp_path / "media" / "forge-a" / name).read_bytes() == (remote / name).read_bytes()
    assert sorted(p.name for p in remote.rglob("*") if p.is_file()) == ["a.png", "b.png", "c.mp4"]


def test_every_unsafe_file_is_listed_with_why(sshd: SshdServer, tmp_path: Path) -> None:
    """Excluded but present, too large, still being written, a library copy whose bytes
    differ (same size: only sha256 sees it): exit 1, each named with its reason."""
    remote = tmp_path / "remote"
    write_file(remote / "good.png", os.urandom(1000), OLD)
    write_file(remote / "copied.png", b"A" * 1000, OLD)
    config = write_config(tmp_path, sshd, remote, max_file_size="50KiB", settle="1h")
    assert drain(config).returncode == 0
    # After that drain: the library copy of copied.png rots (same size, other bytes)...
    (tmp_path / "media" / "forge-a" / "copied.png").write_bytes(b"B" * 1000)
    # ...and new files appear that cannot be verified.
    write_file(remote / "notes.xyz", b"not in include", OLD)
    write_file(remote / "huge.mp4", os.urandom(60_000), OLD)
    (remote / "writing.png").write_bytes(b"half")
    result = drain(config, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    reasons = {item["path"]: item["reason"] for item in report["unsafe"]}
    assert reasons == {
        "copied.png": "bytes_differ",
        "notes.xyz": "excluded",
        "huge.mp4": "too_large",
        "writing.png": "writing",
    }
    assert (report["safe"], report["files"], report["unsafe_count"]) == (False, 1, 4)
    text = drain(config)
    assert text.returncode == 1
    assert "forge-a: NOT safe to destroy: 4 files not safe; " in text.stdout
    assert "  huge.mp4: larger than max_file_size: never synced" in text.stdout
    # A hint per reason, the verdict last (issue 25, item 5).
    assert 'add a pattern to sync.include (e.g. "*.xyz")' in text.stdout
    assert "raise sync.max_file_size above it" in text.stdout
    assert text.stdout.splitlines()[-1].startswith("forge-a: NOT safe to destroy: 4 files")


def test_purge_deletes_only_verified_files_and_honours_preserve(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """--purge deletes what was verified, however young (older_than does not apply), keeps
    `preserve` matches and anything unverified; the library keeps every file."""
    remote = tmp_path / "remote"
    write_file(remote / "one.png", os.urandom(2000), time.time() - 60)
    write_file(remote / "two.png", os.urandom(2000), OLD)
    write_file(remote / "my_favorite.png", os.urandom(2000), OLD)
    write_file(remote / "skip.xyz", b"excluded", OLD)
    config = write_config(tmp_path, sshd, remote)
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:",
            '    cleanup: {older_than: 30d, preserve: ["*favorite*"]}\n    ssh: {port:',
        )
    )
    result = drain(config, "--purge")
    # Not safe (skip.xyz is excluded but present), yet the verified files are purged.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "purge success: 2 files" in result.stdout
    left = sorted(p.name for p in remote.iterdir())
    assert left == ["my_favorite.png", "skip.xyz"]
    library = tmp_path / "media" / "forge-a"
    assert sorted(p.name for p in library.iterdir()) == ["my_favorite.png", "one.png", "two.png"]


def test_an_unreachable_box_is_not_safe(sshd: SshdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    config.write_text(config.read_text().replace(f"port: {sshd.port}", f"port: {free_port()}"))
    result = drain(config)
    assert result.returncode == 1
    assert "forge-a: NOT safe to destroy: the container cannot be reached" in result.stdout


def test_drain_needs_one_container(sshd: SshdServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, tmp_path / "remote")
    result = forge_syncd("--once", "--drain", "--config", str(config))
    assert result.returncode == 2 and "exactly one --container" in result.stderr


def test_syncctl_drain_through_the_daemon(sshd: SshdServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    write_file(remote / "x.png", os.urandom(5000), OLD)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    process = start_daemon(config)
    sock = tmp_path / "run" / "control.sock"
    try:
        wait_until(sock.exists, 30, "the control socket")

        def ctl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(BIN / "forge-syncctl"), "--socket", str(sock), *args],
                capture_output=True,
                text=True,
                timeout=120,
            )

        result = ctl("drain", "forge-a", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert (report["safe"], report["files"], report["bytes"]) == (True, 1, 5000)
        write_file(remote / "late.xyz", b"excluded", OLD)
        text = ctl("drain", "forge-a")
        assert text.returncode == 1
        assert "late.xyz: excluded by include/exclude, but present" in text.stdout
        unknown = ctl("drain", "nope")
        assert unknown.returncode == 2 and "no container 'nope'" in unknown.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_purge_keeps_a_remote_file_whose_library_copy_was_corrupted(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """`--drain --purge` after a library copy rotted (same size and mtime, other bytes, so
    only sha256 can tell): that file is reported unsafe ("the library copy's sha256
    differs") and stays on the container with its bytes, while the verified files are
    purged; the library's other copies are untouched. The container's copy is then the only
    good one: purging it would lose the image."""
    remote = tmp_path / "remote"
    good = {name: os.urandom(3000) for name in ("good.png", "day/also.png")}
    for name, data in good.items():
        write_file(remote / name, data, OLD)
    rotting = os.urandom(3000)
    write_file(remote / "day/rot.png", rotting, OLD)
    config = write_config(tmp_path, sshd, remote)
    first = drain(config)
    assert first.returncode == 0, first.stdout + first.stderr
    library = tmp_path / "media" / "forge-a"
    copy = library / "day" / "rot.png"
    stat = copy.stat()
    copy.write_bytes(bytes(b ^ 0xFF for b in rotting))  # same size, other bytes
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = drain(config, "--purge", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["safe"], report["files"], report["bytes"]) == (False, 2, 6000)
    assert report["purged"] == {"result": "success", "files": 2, "bytes": 6000, "error": None}
    assert report["unsafe"] == [{"path": "day/rot.png", "reason": "bytes_differ", "size": 3000}]
    assert (remote / "day" / "rot.png").read_bytes() == rotting
    assert not (remote / "good.png").exists() and not (remote / "day" / "also.png").exists()
    for name, data in good.items():
        assert (library / name).read_bytes() == data
