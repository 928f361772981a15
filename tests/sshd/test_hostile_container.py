"""A hostile container, end to end through a real sshd: lying `find`, `tar` and `sha256sum`
first in the remote PATH, and a remote tree holding links, devices, FIFOs, sockets, a file that
grows while read, a 10 GB sparse file, 100,000 files in one folder and 255-byte names.

Every case asserts what landed in the library, what was logged, and that nothing was written
outside the library (a `Canary` over the whole test folder plus a sentinel folder and a few
global `PWNED` spots). With FORGE_RELIABILITY_DIR set, the outcomes go to `hostile.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.cleanup import cleanup_container
from forge_syncd.jobs.progress import Progress
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.hostile import (
    Canary,
    Grower,
    Results,
    disabled,
    find_record,
    growing_after_listing,
    lying_find,
    lying_sha256sum,
    lying_tar,
    tar_member,
)
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file

OLD = 1_700_000_000.0
GiB = 1024**3


@pytest.fixture(scope="module")
def results() -> Iterator[Results]:
    """Collects each case's outcome; writes hostile.json at the end of the module."""
    collected = Results()
    yield collected
    collected.write()


@dataclasses.dataclass
class Box:
    """One test's remote tree, library, state and canary."""

    tmp: Path
    remote: Path
    media: Path
    state: Path
    canary: Canary | None = None

    @property
    def library(self) -> Path:
        return self.media / "forge-a"

    def arm(self, server: SshdServer | None = None) -> Canary:
        """Start watching for writes outside the library (call once the remote is built)."""
        self.media.mkdir(exist_ok=True)  # media_root exists; only the library is written
        allowed = [self.library, self.state, self.tmp / "log.jsonl"]
        if server is not None:
            allowed.append(server.workdir)
        self.canary = Canary(self.tmp, allowed)
        return self.canary

    def outside(self) -> list[bytes]:
        assert self.canary is not None
        return self.canary.written_outside()

    def log(self) -> list[dict[str, Any]]:
        text = (self.tmp / "log.jsonl").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [record for record in self.log() if record.get("event") == name]

    def leftovers(self) -> list[bytes]:
        """Temporary files left in the library (there must be none after a run)."""
        return [p for p in tree_files(self.library) if os.path.basename(p).startswith(b".fs-")]


@pytest.fixture
def box(tmp_path: Path) -> Box:
    remote = tmp_path / "remote"
    remote.mkdir()
    return Box(tmp_path, remote, tmp_path / "media", tmp_path / "state")


def hostile_server(box: Box, fakes: Path) -> SshdServer:
    return SshdServer(box.tmp / "sshd", path_dirs=[fakes]).start()


def sync(
    server: SshdServer, box: Box, progress: Progress | None = None, **overrides: Any
) -> RunOutcome:
    """Run one sync of the box's remote through `server`; return its outcome."""
    folders = overrides.pop("folders", ())
    container = dataclasses.replace(
        make_container(server, box.remote, **overrides), folders=folders
    )
    manifest = Manifest.open(box.state)
    remote = SshTransport(container)
    try:
        return sync_container(context(container, box.media, manifest, remote, progress))
    finally:
        remote.close()
        manifest.close()


def cleanup(server: SshdServer, box: Box, **overrides: Any) -> RunOutcome:
    """Run one (real, not dry) cleanup of everything older than a second."""
    container = make_container(server, box.remote, **overrides)
    container = dataclasses.replace(
        container, cleanup=dataclasses.replace(container.cleanup, older_than_s=1.0)
    )
    manifest = Manifest.open(box.state)
    remote = SshTransport(container)
    try:
        return cleanup_container(context(container, box.media, manifest, remote), dry_run=False)
    finally:
        remote.close()
        manifest.close()


def honest_files(box: Box) -> dict[bytes, tuple[bytes, int]]:
    """A few ordinary files that must sync whatever else the container does."""
    write_file(box.remote / "txt2img-images" / "honest.png", b"\x89PNG honest", OLD)
    write_file(box.remote / "txt2img-images" / "2026" / "deep.png", b"\x89PNG deep", OLD + 1)
    write_file(box.remote / "notes.txt", b"a prompt", OLD + 2)
    return tree_files(box.remote)


def sync_through(box: Box, fakes: Path, **overrides: Any) -> RunOutcome:
    """Start a server whose remote PATH begins with `fakes`, arm the box's canary, sync the
    box through it once, stop it; return the outcome."""
    server = hostile_server(box, fakes)
    box.arm(server)
    try:
        return sync(server, box, **overrides)
    finally:
        server.stop()


def sync_with_tools(sshd: SshdServer, box: Box, tools: str) -> RunOutcome:
    """Sync the box through `sshd` ("find+tar") or through a server whose remote lacks
    `find` and `tar` ("sftp only"), with its canary armed."""
    if tools == "sftp only":
        return sync_through(box, disabled(box.tmp / "bin", "find", "tar"))
    box.arm(sshd)
    return sync(sshd, box)


def skipped_reasons(box: Box) -> dict[str, str]:
    return {record["path"]: record["reason"] for record in box.events("file_skipped")}


# --- lying find ----------------------------------------------------------------------------


def test_lying_find_names_are_refused_and_honest_files_still_sync(
    box: Box, results: Results
) -> None:
    """A `find` that appends `../escape.png`, `/etc/passwd`, `a/../../b.png`, a 256-byte
    name, garbage fields, a huge size and an unterminated last record: each is skipped and
    logged (`file_skipped` / `listing_warning`), nothing is written outside the library,
    and the honest files sync byte for byte."""
    expected = honest_files(box)
    mtime = b"1700000000.0000000000"
    extra = b"".join(
        [
            find_record(b"f", b"5", mtime, b"./../escape.png"),
            find_record(b"f", b"5", mtime, b"../escape2.png"),
            find_record(b"f", b"5", mtime, b"/etc/passwd"),
            find_record(b"f", b"5", mtime, b"./a/../../b.png"),
            find_record(b"f", b"5", mtime, b"./../../PWNED.png"),
            find_record(b"f", b"5", mtime, b"./" + b"n" * 256 + b".png"),
            find_record(b"f", b"5", mtime, b"./.fs-0123456789abcdef.part"),
            find_record(b"f", b"five", mtime, b"./garbage-size.png"),
            find_record(b"f", b"5", b"yesterday", b"./garbage-mtime.png"),
            find_record(b"zz", b"5", mtime, b"./garbage-type.png"),
            find_record(b"d", b"5", mtime, b"./folder.png"),
            find_record(b"f", b"9" * 20, mtime, b"./huge.png"),
            b"f\x005\x00" + mtime + b"\x00./tail.png",  # last record not NUL-terminated
        ]
    )
    fakes = lying_find(box.tmp / "bin", extra)
    outcome = sync_through(box, fakes)
    assert outcome.sync.listing == "find"
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    reasons = skipped_reasons(box)
    assert reasons["../escape.png"].startswith("name has")
    assert reasons["../escape2.png"] == "name outside the root"
    assert reasons["/etc/passwd"] == "name outside the root"
    assert "'..'" in reasons["a/../../b.png"]
    assert "'..'" in reasons["../../PWNED.png"]
    assert "255" in reasons["n" * 256 + ".png"]
    assert "temporary" in reasons[".fs-0123456789abcdef.part"]
    for name in ("garbage-size.png", "garbage-mtime.png", "garbage-type.png", "folder.png"):
        assert reasons[name] == "malformed listing record"
    assert reasons["huge.png"] == "too_large"
    assert "tail.png" not in reasons
    warnings = [r["error"] for r in box.events("listing_warning")]
    assert any("not NUL-terminated" in w for w in warnings)
    outside = box.outside()
    assert outside == []
    results.add("find: '..', absolute, 256-byte, garbage, huge, unterminated", "refused", 0)


def test_a_name_listed_twice_is_fetched_once(box: Box, results: Results) -> None:
    """A `find` that lists an honest name a second time with another size: the name is
    taken once (the first record), the second is skipped and logged, and the file syncs."""
    expected = honest_files(box)
    extra = find_record(b"f", b"3", b"1700000000.0", b"./txt2img-images/honest.png")
    server = hostile_server(box, lying_find(box.tmp / "bin", extra))
    box.arm(server)
    progress = Progress()
    try:
        outcome = sync(server, box, progress)
    finally:
        server.stop()
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    assert outcome.files == len(expected)
    assert progress.files_done == progress.files_total == len(expected)
    assert skipped_reasons(box)["txt2img-images/honest.png"] == "listed twice"
    assert box.outside() == []
    results.add("find: a name listed twice with another size", "first taken, second skipped", 0)


@pytest.mark.parametrize("tools", ["find+tar", "sftp only"])
def test_overlapping_folders_fetch_each_file_once(
    sshd: SshdServer, box: Box, results: Results, tools: str
) -> None:
    """Configured folders that overlap (`txt2img-images` and `txt2img-images/2026`) make an
    honest listing name a file twice: it is fetched and counted once, progress adds up, and
    nothing is reported as skipped."""
    expected = honest_files(box)
    del expected[b"notes.txt"]
    server = sshd
    if tools == "sftp only":
        server = hostile_server(box, disabled(box.tmp / "bin", "find", "tar"))
    box.arm(server)
    progress = Progress()
    try:
        outcome = sync(server, box, progress, folders=("txt2img-images", "txt2img-images/2026"))
    finally:
        if server is not sshd:
            server.stop()
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    assert outcome.files == len(expected)
    assert progress.files_done == progress.files_total == len(expected)
    assert box.events("file_skipped") == []
    assert box.outside() == []
    results.add(f"overlapping folders list a file twice ({tools})", "fetched once", 0)


# --- lying tar -----------------------------------------------------------------------------


@pytest.mark.parametrize("then_real", [True, False], ids=["lies then real stream", "lies only"])
def test_lying_tar_members_are_refused_and_the_files_come_over_sftp(
    box: Box, results: Results, then_real: bool
) -> None:
    """A `tar` that sends `../x`, absolute, symlink, hard link, device, FIFO, folder,
    unrequested, long-name traversal, too long and too short members (then the real stream,
    or nothing more): every one is refused and logged (`tar_member_refused`), nothing lands
    outside the library, files the stream did not deliver are fetched over SFTP in the same
    run (`tar_fallback`), and the library equals the remote tree."""
    expected = honest_files(box)
    write_file(box.remote / "txt2img-images" / "longer.png", b"0123456789", OLD)
    write_file(box.remote / "txt2img-images" / "shorter.png", b"0123456789", OLD)
    write_file(box.remote / "txt2img-images" / "linked.png", b"real bytes", OLD)
    expected = tree_files(box.remote)
    members = b"".join(
        [
            tar_member(b"../x.png", b"PWNED"),
            tar_member(b"../../PWNED", b"PWNED"),
            tar_member(os.fsencode(box.tmp / "sentinel" / "PWNED.png"), b"PWNED"),
            tar_member(b"txt2img-images/linked.png", kind=tarfile.SYMTYPE, linkname="/etc"),
            tar_member(b"txt2img-images/honest.png", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
            tar_member(b"txt2img-images/honest.png", kind=tarfile.CHRTYPE),
            tar_member(b"txt2img-images/honest.png", kind=tarfile.BLKTYPE),
            tar_member(b"txt2img-images/honest.png", kind=tarfile.FIFOTYPE),
            tar_member(b"txt2img-images/2026", kind=tarfile.DIRTYPE),
            tar_member(b"unrequested.png", b"PWNED"),
            tar_member(b"a/" * 60 + b"../" * 70 + b"PWNED-long.png", b"PWNED"),
            tar_member(b"txt2img-images/longer.png", b"0123456789PWNED"),
            tar_member(b"txt2img-images/shorter.png", b"01234"),
        ]
    )
    outcome = sync_through(box, lying_tar(box.tmp / "bin", members, then_real=then_real))
    assert outcome.sync.transfer == "tar"
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    assert box.leftovers() == []
    fallback = box.events("tar_fallback")
    if then_real:  # the real stream delivered every requested file after the lies
        assert fallback == []
    else:
        assert len(fallback) == 1 and fallback[0]["files"] == len(expected)
        assert "refused member" in fallback[0]["error"]
    refused = {r["path"]: r["reason"] for r in box.events("tar_member_refused")}
    assert len(box.events("tar_member_refused")) == 13
    assert "'..'" in refused["../x.png"]
    assert "absolute" in refused[str(box.tmp / "sentinel" / "PWNED.png")]
    assert "symlink" in refused["txt2img-images/linked.png"]
    assert "not requested" in refused["unrequested.png"]
    assert "size 15 differs" in refused["txt2img-images/longer.png"]
    assert "size 5 differs" in refused["txt2img-images/shorter.png"]
    assert box.outside() == []
    how = "refused, logged" if then_real else "refused, logged, fetched over SFTP"
    results.add(
        f"tar: '..', absolute, links, devices, FIFO, sizes ({'then real' if then_real else 'lies only'})",
        how,
        0,
    )


def test_a_second_copy_of_a_member_cannot_replace_the_first(box: Box, results: Results) -> None:
    """A requested member sent twice with different bytes: first a copy of `notes.txt` with
    the listed size and mtime but other bytes, then the real stream's copy. The second copy
    is refused as sent twice (logged), the library holds the first copy's bytes exactly
    (no second write, no mix of the two, no double length), and nothing else changes.

    The two copies differ, so a parser that let a later copy through would leave the real
    stream's bytes (or both appended) under `notes.txt`: this test fails on it."""
    expected = honest_files(box)
    first_bytes = b"A PROMPT"  # the size of the real b"a prompt", other bytes
    assert len(first_bytes) == len(expected[b"notes.txt"][0]) != 0
    assert first_bytes != expected[b"notes.txt"][0]
    first = tar_member(b"notes.txt", first_bytes, mtime=int(OLD + 2))
    outcome = sync_through(box, lying_tar(box.tmp / "bin", first))
    assert outcome.result == "success", outcome.error
    assert outcome.sync.transfer == "tar"
    library = tree_files(box.library)
    assert library[b"notes.txt"] == (first_bytes, expected[b"notes.txt"][1])
    assert {p: v for p, v in library.items() if p != b"notes.txt"} == {
        p: v for p, v in expected.items() if p != b"notes.txt"
    }
    assert outcome.files == len(expected)
    refused = [(r["path"], r["reason"]) for r in box.events("tar_member_refused")]
    assert refused == [("notes.txt", "not requested (or sent twice)")]
    assert box.events("tar_fallback") == []
    assert box.leftovers() == []
    assert box.outside() == []
    results.add("tar: a requested member sent twice", "second copy refused", 0)


def test_a_lying_tar_with_wrong_bytes_is_caught_by_sha256(box: Box, results: Results) -> None:
    """Under `verify: sha256`, a `tar` sending a requested member with the listed size and
    mtime but other bytes: the file does not count as synced and no final name holds the
    wrong bytes."""
    expected = honest_files(box)
    wrong = tar_member(b"notes.txt", b"PWNED!!!", mtime=int(OLD + 2))
    outcome = sync_through(box, lying_tar(box.tmp / "bin", wrong), verify="sha256")
    assert outcome.result == "failure"
    assert "verify" in outcome.error_kinds
    got = tree_files(box.library)
    assert b"notes.txt" not in got
    assert got == {k: v for k, v in expected.items() if k != b"notes.txt"}
    assert box.outside() == []
    results.add("tar: right size, wrong bytes (verify sha256)", "not synced, reported", 0)


# --- lying sha256sum -----------------------------------------------------------------------


def test_lying_sha256sum_syncs_nothing_and_purges_nothing(
    sshd: SshdServer, box: Box, results: Results
) -> None:
    """A `sha256sum` that reports wrong digests, with `verify: sha256`: no file counts as
    synced (none reaches its final name); after an honest sync, a cleanup through the
    lying `sha256sum` deletes nothing (the bytes it reports at the delete are not the
    library's: kept, and marked to be fetched again), while after the honest sync that
    fetches them again (the same bytes: no version made) the honest cleanup purges all."""
    expected = honest_files(box)
    # No python3 there, so `sha256sum` is what hashes (python3 is preferred where it works).
    server = hostile_server(box, disabled(lying_sha256sum(box.tmp / "bin"), "python3"))
    box.arm(server)
    try:
        lied = sync(server, box, verify="sha256")
        assert lied.result == "failure" and lied.files == 0
        assert "verify" in lied.error_kinds
        assert tree_files(box.library) == {}
        honest = sync(sshd, box, verify="sha256")
        assert honest.result == "success" and honest.files == len(expected)
        kept = cleanup(server, box, verify="sha256")
    finally:
        server.stop()
    assert kept.result == "success" and kept.files == 0
    assert tree_files(box.remote) == expected
    reasons = {r["reason"] for r in box.events("file_kept")}
    assert reasons == {"bytes_differ"}
    assert box.outside() == []
    refetched = sync(sshd, box, verify="sha256")
    assert refetched.files == len(expected) and refetched.versions == 0
    purged = cleanup(sshd, box, verify="sha256")
    assert purged.files == len(expected) and tree_files(box.remote) == {}
    results.add("sha256sum: wrong digests (sync and cleanup)", "nothing synced or purged", 0)


# --- a remote tree with things that are not regular files ------------------------------------


@pytest.mark.parametrize("tools", ["find+tar", "sftp only"])
def test_links_devices_fifos_and_sockets_are_skipped(
    sshd: SshdServer, box: Box, results: Results, tools: str
) -> None:
    """Real symlinks (to a file and a folder outside the root), a character and a block
    device, a FIFO and a socket on the remote: each is skipped and logged, only regular
    files sync, through the find+tar path and through plain SFTP."""
    expected = honest_files(box)
    secret = box.tmp / "secret"
    write_file(secret / "secret.png", b"\x89PNG secret")
    images = box.remote / "txt2img-images"
    (images / "link.png").symlink_to(secret / "secret.png")
    (images / "linked-dir").symlink_to(secret, target_is_directory=True)
    os.mknod(images / "char.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.mknod(images / "block.png", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mkfifo(images / "fifo.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(images / "sock.png"))
    outcome = sync_with_tools(sshd, box, tools)
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    reasons = skipped_reasons(box)
    want = {"link.png", "linked-dir", "char.png", "block.png", "fifo.png", "sock.png"}
    assert {os.path.basename(p) for p in reasons} == want
    assert reasons["txt2img-images/link.png"] == "symlink"
    assert box.outside() == []
    results.add(f"remote links, devices, FIFO, socket ({tools})", "skipped, logged", 0)


# --- a file that changes while it is read --------------------------------------------------


@pytest.mark.parametrize("tools", ["find+tar", "sftp only"])
def test_a_file_growing_while_read_is_discarded_then_synced(
    sshd: SshdServer, box: Box, results: Results, tools: str
) -> None:
    """A remote file that grows between the listing and its read (the remote `find` appends
    to it right after listing, so every run sees it change): it does not reach its final
    name in that run (never a mixed or newer-than-listed file), no temporary file is left,
    and the next run, once it is quiet, syncs it exactly."""
    expected = honest_files(box)
    growing = box.remote / "txt2img-images" / "growing.png"
    write_file(growing, os.urandom(768 * 1024), OLD)
    fakes = growing_after_listing(box.tmp / "bin", growing, b"+" * 4096)
    if tools == "sftp only":
        disabled(fakes, "tar")
    server = hostile_server(box, fakes)
    allowed_growth = box.arm(server)
    library_file = box.library / "txt2img-images" / "growing.png"
    try:
        first = sync(server, box, bwlimit=256 * 1024)
        assert growing.stat().st_size > 768 * 1024
        assert not library_file.exists()
        assert box.leftovers() == []
        deferred = [r for r in box.events("file_deferred") if r["path"].endswith("growing.png")]
        assert len(deferred) == 1
        assert first.result == "success", first.error
        assert tree_files(box.library) == expected
        (box.tmp / "bin" / "find").unlink()  # the container goes quiet
        second = sync(server, box)
    finally:
        server.stop()
    assert second.result == "success" and second.files == 1
    assert library_file.read_bytes() == growing.read_bytes()
    ours = {os.fsencode(growing), os.fsencode(box.tmp / "bin" / "find")}
    outside = [p for p in allowed_growth.written_outside() if p not in ours]
    assert outside == []
    results.add(f"file growing while read ({tools})", "discarded, synced next run", 0)


def _temp_exists(folder: Path) -> bool:
    try:
        return any(name.startswith(".fs-") for name in os.listdir(folder))
    except FileNotFoundError:
        return False


def test_a_file_that_never_stops_growing_does_not_keep_the_read_going(
    box: Box, results: Results
) -> None:
    """SFTP reads a file listed at N bytes that keeps growing faster than it is read: the
    read stops after N+1 bytes (the file changed; it is deferred) instead of following the
    growth for as long as it lasts. Bounded by a timeout against a hang."""
    expected = honest_files(box)
    endless = box.remote / "txt2img-images" / "endless.png"
    write_file(endless, b"x" * 1024, OLD)
    server = hostile_server(box, disabled(box.tmp / "bin", "tar"))
    box.arm(server)
    outcome: list[RunOutcome] = []
    progress = Progress()
    runner = threading.Thread(
        target=lambda: outcome.append(sync(server, box, progress, bwlimit=1024 * 1024)),
        daemon=True,
    )
    # Started before the run: the listing sees some size, the read sees ever more.
    grower = Grower(endless, b"+" * 65536, 0.01).start()
    try:
        runner.start()
        runner.join(timeout=60)
        ended = not runner.is_alive()
    finally:
        grower.stop()
        runner.join(timeout=60)
        server.stop()
    assert ended, "the read followed the growing file without end"
    assert not (box.library / "txt2img-images" / "endless.png").exists()
    assert tree_files(box.library) == expected
    assert box.leftovers() == []
    assert progress.bytes_done <= progress.bytes_total + 1
    results.add("file growing without end (sftp)", "read bounded, deferred", 0)


# --- size limits ---------------------------------------------------------------------------


def test_a_10gb_sparse_file_over_max_file_size_is_skipped(
    sshd: SshdServer, box: Box, results: Results
) -> None:
    """A 10 GB sparse file with `max_file_size` 1 GiB: skipped with a warning, not a byte
    of it fetched; the other files sync."""
    expected = honest_files(box)
    sparse = box.remote / "txt2img-images" / "sparse.png"
    with open(sparse, "wb") as handle:
        handle.truncate(10 * 10**9)
    os.utime(sparse, (OLD, OLD))
    box.arm(sshd)
    progress = Progress()
    outcome = sync(sshd, box, progress, max_file_size=GiB)
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == {k: v for k, v in expected.items()}
    assert progress.bytes_total == sum(len(v[0]) for v in expected.values())
    skipped = [r for r in box.events("file_skipped") if r["path"].endswith("sparse.png")]
    assert len(skipped) == 1 and skipped[0]["reason"] == "too_large"
    assert skipped[0]["level"] == "warning" and skipped[0]["bytes"] == 10 * 10**9
    assert box.outside() == []
    results.add("10 GB sparse file over max_file_size", "skipped, warning", 0)


def test_a_size_lie_cannot_pull_a_big_file_past_max_file_size(box: Box, results: Results) -> None:
    """A `find` that reports a 200 MB (sparse) remote file as 5 bytes, SFTP transfer: the
    read stops right after the listed size (the file counts as changed and is deferred), so
    a lying listing cannot make us copy a file larger than `max_file_size`."""
    expected = honest_files(box)
    big = box.remote / "txt2img-images" / "big.png"
    with open(big, "wb") as handle:
        handle.truncate(200 * 10**6)
    os.utime(big, (OLD, OLD))
    fakes = disabled(box.tmp / "bin", "tar")
    # Our find lists everything else honestly; for big.png it claims 5 bytes.
    lying_find(fakes, b"")
    (fakes / "find").write_text(
        "#!/bin/sh\n"
        '[ "$1" = -P ] || exec /usr/bin/find "$@"\n'
        '/usr/bin/find "$@" | sed -z "s/^200000000$/5/"\n'
    )
    server = hostile_server(box, fakes)
    box.arm(server)
    progress = Progress()
    try:
        outcome = sync(server, box, progress, max_file_size=1024 * 1024)
    finally:
        server.stop()
    assert tree_files(box.library) == expected
    assert box.leftovers() == []
    assert progress.bytes_done <= progress.bytes_total + 1
    deferred = [r for r in box.events("file_deferred") if r["path"].endswith("big.png")]
    assert len(deferred) == 1
    assert outcome.result == "success", outcome.error
    assert box.outside() == []
    results.add("find: size lie on a 200 MB file (sftp)", "read bounded, deferred", 0)


# --- many files, long names ----------------------------------------------------------------


@pytest.mark.slow
def test_100000_files_in_one_folder_sync_completely(
    sshd: SshdServer, box: Box, results: Results
) -> None:
    """100,000 small files in one folder sync completely (count, and a sample of contents)."""
    folder = os.fsencode(box.remote / "txt2img-images")
    os.makedirs(folder)
    count = 100_000
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(count):
        fd = os.open(b"%s/%06d.png" % (folder, i), flags, 0o644)
        os.write(fd, b"%d" % i)
        os.close(fd)
    box.arm(sshd)
    started = time.monotonic()
    outcome = sync(sshd, box, settle_s=0.0)
    took = time.monotonic() - started
    assert outcome.result == "success", outcome.error
    assert outcome.files == count
    names = os.listdir(box.library / "txt2img-images")
    assert len(names) == count
    for i in range(0, count, 997):
        assert (box.library / "txt2img-images" / f"{i:06d}.png").read_bytes() == b"%d" % i
    assert box.outside() == []
    results.add(f"100,000 files in one folder ({took:.1f} s)", "all synced", 0)


LONG_NAMES = (
    b"x" * 251 + b".png",
    (b"\xff\xfe" * 126)[:251] + b".png",
    ("é" * 125).encode() + b"a.png",
)


@pytest.mark.parametrize("tools", ["find+tar", "sftp only"])
def test_255_byte_names_sync(sshd: SshdServer, box: Box, results: Results, tools: str) -> None:
    """File names of exactly 255 bytes (ASCII, not UTF-8 at all, and UTF-8) sync, and so do
    their temporary names; nothing is left behind."""
    expected = honest_files(box)
    for n, name in enumerate(LONG_NAMES):
        assert len(name) == 255
        write_file(os.path.join(os.fsencode(box.remote / "txt2img-images"), name), b"%d" % n, OLD)
    expected = tree_files(box.remote)
    outcome = sync_with_tools(sshd, box, tools)
    assert outcome.result == "success", outcome.error
    assert tree_files(box.library) == expected
    assert box.leftovers() == []
    assert box.outside() == []
    results.add(f"255-byte names, UTF-8 and not ({tools})", "synced", 0)
