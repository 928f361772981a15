"""Trust, round 3: a rewrite that keeps a file's size within the second (or the very clock
tick) of its mtime is never taken for the old bytes, and never purged; dates outside
1677-2262 are synced. Through a real sshd, on the fast path (GNU find + tar + sha256sum)
and on plain SFTP (no find, tar or sha256sum on the container).

Regressions of issue 23 item 1: mtimes were compared at whole seconds in the plan, in
cleanup's rules and in the delete's re-check (`stat -c %s:%Y`), so live mode (which fetches
a closed file within ~0.2 s) took a same-size rewrite in that second for unchanged, never
fetched it, and cleanup later purged the only copy of the new bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.cleanup import cleanup_container
from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.mtimes import NS
from forge_syncd.remote.types import RemoteFile
from forge_syncd.sync import SyncState, sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.hostile import disabled
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files

PATH = b"txt2img-images/00001.png"
OLD_S = 1_700_000_000


@dataclasses.dataclass
class Box:
    """A remote folder, a library and a manifest, reached through one sshd."""

    server: SshdServer
    remote: Path
    media: Path
    state: Path

    @property
    def library(self) -> Path:
        return self.media / "forge-a"

    def container(self, **sync: Any) -> ContainerConfig:
        container = make_container(self.server, self.remote, **sync)
        return dataclasses.replace(
            container, cleanup=dataclasses.replace(container.cleanup, older_than_s=1.0)
        )

    def write(self, data: bytes, mtime_ns: int) -> RemoteFile:
        """Write the remote file in place (as Forge and ComfyUI do) and date it."""
        path = self.remote / os.fsdecode(PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "r+b" if path.exists() else "wb") as handle:
            handle.write(data)
            handle.truncate()
        os.utime(path, ns=(mtime_ns, mtime_ns))
        return RemoteFile(PATH, len(data), mtime_ns)

    def sync(self, changed: list[RemoteFile] | None = None, **sync: Any) -> RunOutcome:
        """One sync (a live watcher's run of `changed`, else a full run)."""
        manifest = Manifest.open(self.state)
        remote = SshTransport(self.container(**sync))
        try:
            ctx = context(self.container(**sync), self.media, manifest, remote)
            return sync_container(ctx, SyncState(), changed)
        finally:
            remote.close()
            manifest.close()

    def cleanup(self) -> RunOutcome:
        manifest = Manifest.open(self.state)
        remote = SshTransport(self.container())
        try:
            ctx = context(self.container(), self.media, manifest, remote)
            return cleanup_container(ctx, dry_run=False)
        finally:
            remote.close()
            manifest.close()

    def record(self) -> tuple[int, bool, str | None]:
        """The manifest row of PATH: (mtime_ns, recheck, sha256)."""
        manifest = Manifest.open(self.state)
        try:
            row = manifest.files.records("forge-a")[PATH]
        finally:
            manifest.close()
        return row.mtime_ns, row.recheck, row.sha256

    def versions(self) -> list[bytes]:
        """The bytes of every version of PATH kept under .versions/."""
        found = tree_files(self.library / ".versions")
        return sorted(data for _path, (data, _mtime) in found.items())


@pytest.fixture
def fast_box(sshd: SshdServer, tmp_path: Path) -> Box:
    """A box on the fast path only."""
    remote = tmp_path / "remote"
    remote.mkdir()
    return Box(sshd, remote, tmp_path / "media", tmp_path / "state")


@pytest.fixture(params=["find+tar", "no python3", "sftp only"])
def box(request: pytest.FixtureRequest, sshd: SshdServer, tmp_path: Path) -> Iterator[Box]:
    """A box on the fast path (the shared sshd: hashing and deletes in python3), on one
    without python3 (hashing and deletes with sha256sum, stat and rm in sh), or on one
    whose remote has no find, tar or sha256sum (everything over SFTP)."""
    remote = tmp_path / "remote"
    remote.mkdir()
    if request.param == "find+tar":
        yield Box(sshd, remote, tmp_path / "media", tmp_path / "state")
        return
    missing = ("python3",) if request.param == "no python3" else ("find", "tar", "sha256sum")
    tools = disabled(tmp_path / "bin", *missing)
    server = SshdServer(tmp_path / "sshd", path_dirs=[tools]).start()
    try:
        yield Box(server, remote, tmp_path / "media", tmp_path / "state")
    finally:
        server.stop()


def test_a_same_size_rewrite_within_the_second_is_fetched_and_the_first_bytes_versioned(
    fast_box: Box,
) -> None:
    """A file synced, then rewritten in place with other bytes of the same size and an mtime
    in the same second (100 ms later): the listing's nanoseconds show the change, so the
    next run fetches the new bytes and keeps the first under .versions/. (Over SFTP, whole
    seconds cannot show it: the racy rule and the purge's byte check below cover it.)"""
    box = fast_box
    first, second = os.urandom(4096), os.urandom(4096)
    box.write(first, OLD_S * NS + 100_000_000)
    assert box.sync().files == 1
    box.write(second, OLD_S * NS + 200_000_000)
    again = box.sync()
    assert again.files == 1 and again.versions == 1
    assert (box.library / os.fsdecode(PATH)).read_bytes() == second
    assert box.versions() == [first]


def test_a_copy_read_within_a_tick_of_its_mtime_is_fetched_again_after_a_same_mtime_rewrite(
    box: Box,
) -> None:
    """Live mode fetches a file the moment the watcher reports it closed. If its bytes were
    read before its mtime was a clock tick old (here: the mtime is 5 s ahead, so every read
    is too soon), a rewrite could keep both size and mtime: the copy is recorded with
    `recheck`, stays at risk, and the watcher's next report of the same size and mtime
    fetches the file again: the new bytes land, the first are versioned."""
    ahead = time.time_ns() + 5 * NS
    first, second = os.urandom(8192), os.urandom(8192)
    listed = box.write(first, ahead)
    landed = box.sync(changed=[listed])
    assert landed.files == 1
    assert box.record()[:2] == (ahead, True)
    assert PATH in landed.sync.at_risk.files  # racy: still at risk
    listed = box.write(second, ahead)  # the very same mtime, to the nanosecond
    again = box.sync(changed=[listed])
    assert again.files == 1 and again.versions == 1
    assert (box.library / os.fsdecode(PATH)).read_bytes() == second
    assert box.versions() == [first]


def test_a_purge_checks_the_bytes_and_keeps_a_rewrite_the_times_cannot_show(box: Box) -> None:
    """The case no time can show: a same-size rewrite that keeps the very mtime (a clock
    tick; SFTP's whole seconds). The sync takes it as unchanged, but cleanup hashes the
    remote file on the container right before the delete: its sha256 is not the library
    copy's, so it is kept (file_kept, bytes_differ), marked, and the next sync fetches the
    new bytes and versions the first. Nothing is lost; then the purge goes through."""
    mtime = OLD_S * NS + 123_456_789
    first, second = os.urandom(6000), os.urandom(6000)
    box.write(first, mtime)
    assert box.sync().files == 1
    assert box.record()[2] == hashlib.sha256(first).hexdigest()  # kept from when it landed
    box.write(second, mtime)
    assert box.sync().files == 0  # the times say unchanged
    kept = box.cleanup()
    assert kept.files == 0
    assert (box.remote / os.fsdecode(PATH)).read_bytes() == second
    assert box.record()[1] is True
    refetched = box.sync()
    assert refetched.files == 1 and refetched.versions == 1
    assert (box.library / os.fsdecode(PATH)).read_bytes() == second
    assert box.versions() == [first]
    purged = box.cleanup()
    assert purged.files == 1 and not (box.remote / os.fsdecode(PATH)).exists()


def test_dates_before_1970_and_after_2262_are_synced_with_their_mtimes(box: Box) -> None:
    """Files dated 1960 and 2400 (ext4 holds dates to 2446) are synced, not refused, and
    not fetched again; the one from 2400 is ahead of the container's clock, so, as any file
    from the future, once two looks agree. The fast path keeps their exact mtimes; SFTP
    carries 32-bit unsigned seconds (1970-2106), so there the date is what it sends."""
    dates = {b"old.png": -315_619_200 * NS + 5, b"far.png": 13_569_465_600 * NS + 123_456_789}
    for name, mtime in dates.items():
        (box.remote / os.fsdecode(name)).write_bytes(name * 100)
        os.utime(box.remote / os.fsdecode(name), ns=(mtime, mtime))
    first, second = box.sync(), box.sync()
    assert first.result == second.result == "success"
    assert first.files + second.files == 2
    assert box.sync().files == 0
    for name, mtime in dates.items():
        local = box.library / os.fsdecode(name)
        assert local.read_bytes() == name * 100
        if not (box.server.path_dirs and (box.server.path_dirs[0] / "find").exists()):
            assert os.stat(local).st_mtime_ns == mtime


def test_refused_regular_files_are_media_at_risk_and_links_are_not(box: Box) -> None:
    """A real remote folder named `.versions` (the library's own) and a file named like
    forge-syncd's temporary files are refused by the listing, so never synced: they count
    as media at risk (status `remote_only`), as drain counts them; a symlink does not (it
    holds no media)."""
    (box.remote / ".versions").mkdir()
    (box.remote / ".versions" / "a.png").write_bytes(b"x" * 10)
    (box.remote / ".fs-0123456789abcdef.part").write_bytes(b"y" * 20)
    (box.remote / "ok.png").write_bytes(b"z" * 30)
    os.utime(box.remote / "ok.png", (OLD_S, OLD_S))  # not read within its second: settled
    (box.remote / "link.png").symlink_to(box.remote / "ok.png")
    outcome = box.sync(include=("*",))
    assert outcome.files == 1
    at_risk = outcome.sync.at_risk.files
    assert sorted(at_risk) == [b".fs-0123456789abcdef.part", b".versions/a.png"]
    assert sum(f.size for f in at_risk.values()) == 30
