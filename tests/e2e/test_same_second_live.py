"""Trust, round 3, through the real daemon in live mode (the real inotify watcher on a real
sshd): a same-size rewrite within the second of the first write, and a rewrite that keeps
the very mtime of a copy read too soon, both reach the library; the first bytes are kept
under .versions/. On the fast path (tar) and with the bytes fetched over SFTP (no tar on
the container; the watcher still reports nanoseconds).

Regression of issue 23 item 1: live mode fetched a closed file within ~0.2 s; a rewrite in
place with the same size in that second was taken for unchanged and later purged.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.mtimes import NS
from tests.support.cli import write_config
from tests.support.daemon import read_log, start_daemon, wait_until
from tests.support.hostile import disabled
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files

OLD_S = 1_700_000_000


@pytest.fixture(params=["tar", "sftp"])
def live(request: pytest.FixtureRequest, sshd: SshdServer, tmp_path: Path) -> Iterator[Path]:
    """A daemon watching an empty remote folder (poll interval 1 h: only the watcher can
    bring a file in); with "sftp" the container has no tar, so bytes come over SFTP."""
    server = sshd
    if request.param == "sftp":
        server = SshdServer(tmp_path / "sshd", path_dirs=[disabled(tmp_path / "bin", "tar")])
        server.start()
    remote = tmp_path / "remote"
    remote.mkdir()
    config = write_config(tmp_path, server, remote, interval="1h", settle="5s")
    process = start_daemon(config)
    try:
        log = tmp_path / "log" / "forge-syncd.jsonl"
        wait_until(
            lambda: any(r["event"] == "watch_started" for r in read_log(log)), 60, "the watcher"
        )
        wait_until(
            lambda: any(r["event"] == "sync_finished" for r in read_log(log)), 60, "a first run"
        )
        yield tmp_path
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        if server is not sshd:
            server.stop()


def put(remote: Path, data: bytes, mtime_ns: int) -> None:
    """Write `data` beside the target, date it, rename it into place (one `w` record)."""
    temp = remote / ".00001.png.tmp"
    temp.write_bytes(data)
    os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, remote / "00001.png")


def library(work: Path) -> dict[bytes, bytes]:
    found = tree_files(work / "media" / "forge-a", versions=True)
    return {path: data for path, (data, _) in found.items()}


def test_a_rewrite_in_the_same_second_reaches_the_library(live: Path) -> None:
    """00001.png lands; a same-size rewrite dated 100 ms later in the same second lands too,
    and the first bytes move to .versions/ (mtimes compared to the nanosecond)."""
    first, second = os.urandom(20_000), os.urandom(20_000)
    put(live / "remote", first, OLD_S * NS + 100_000_000)
    wait_until(lambda: library(live).get(b"00001.png") == first, 30, "the first bytes")
    put(live / "remote", second, OLD_S * NS + 200_000_000)
    wait_until(lambda: library(live).get(b"00001.png") == second, 30, "the rewrite")
    versions = [data for path, data in library(live).items() if path.startswith(b".versions/")]
    assert versions == [first]


def test_a_rewrite_keeping_the_mtime_of_a_copy_read_too_soon_reaches_the_library(
    live: Path,
) -> None:
    """A file dated 3 s ahead of the clock is fetched the moment the watcher reports it:
    read before its mtime was a tick old, so recorded to be checked again. A same-size
    rewrite with the very same mtime (nothing in the times differs) is fetched when the
    watcher reports it: the new bytes land and the first are versioned."""
    ahead = time.time_ns() + 3 * NS
    first, second = os.urandom(20_000), os.urandom(20_000)
    put(live / "remote", first, ahead)
    wait_until(lambda: library(live).get(b"00001.png") == first, 30, "the first bytes")
    put(live / "remote", second, ahead)
    wait_until(lambda: library(live).get(b"00001.png") == second, 30, "the rewrite")
    versions = [data for path, data in library(live).items() if path.startswith(b".versions/")]
    assert versions == [first]


def test_an_in_place_rewrite_of_a_file_dated_now_reaches_the_library(live: Path) -> None:
    """The case the issue reproduced: a file written in place (dated now, as a generator
    writes it), fetched within a fraction of a second, then rewritten in place with other
    bytes of the same size as soon as it landed (most often within the same second): the
    new bytes land and the first are versioned."""
    first, second = os.urandom(20_000), os.urandom(20_000)
    target = live / "remote" / "00002.png"
    target.write_bytes(first)
    wait_until(lambda: library(live).get(b"00002.png") == first, 30, "the first bytes")
    with open(target, "r+b") as handle:  # in place: same inode, same size
        handle.write(second)
    wait_until(lambda: library(live).get(b"00002.png") == second, 30, "the rewrite")
    versions = [data for path, data in library(live).items() if path.startswith(b".versions/")]
    assert versions == [first]
