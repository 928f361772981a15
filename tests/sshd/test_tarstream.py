"""The strict tar reader refuses what it did not ask for; every fast path and fallback
produces the identical tree, even against a lying remote `tar`."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from forge_syncd.jobs.record import RunOutcome
from forge_syncd.remote.types import Fetched, FetchItem, RemoteFile
from forge_syncd.transports.receive import Received
from forge_syncd.transports.shell.tarstream import TarError, TarReader
from forge_syncd.transports.ssh.tarfetch import TarStrategy
from tests.conftest import make_container
from tests.support.hostile import tar_member
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer
from tests.support.trees import expected_forge_files, forge_tree, tree_files, write_file


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """Build a GNU tar stream with Python's tarfile (a test-side producer only)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def member(
    name: str | bytes, data: bytes = b"", kind: bytes = tarfile.REGTYPE, size: int | None = None
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(os.fsdecode(name) if isinstance(name, bytes) else name)
    info.type = kind
    info.size = len(data) if size is None else size
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info, data


def read(
    stream: bytes, wanted: dict[bytes, int]
) -> tuple[dict[bytes, bytes], list[tuple[bytes, str]]]:
    got: dict[bytes, bytearray] = {}
    reader = TarReader(io.BytesIO(stream), wanted)
    reader.members(
        write=lambda name, chunk: got[name].extend(chunk),
        start=lambda name: got.setdefault(name, bytearray()),
        end=lambda name, failure: None,
    )
    return {k: bytes(v) for k, v in got.items()}, reader.refused


def test_requested_members_are_read_exactly() -> None:
    """Requested regular files arrive byte for byte, long and non-UTF-8 names included."""
    long_name = ("d/" + "x" * 150 + ".png").encode()
    odd = b"a/latin1-\xe9\xff new\nline.png"
    stream = tar_bytes(member(long_name, b"L" * 1000), member(odd, b"odd"), member("b.png", b""))
    got, refused = read(stream, {long_name: 1000, odd: 3, b"b.png": 0})
    assert got == {long_name: b"L" * 1000, odd: b"odd", b"b.png": b""}
    assert refused == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (member("../escape.png", b"x"), "'..'"),
        (member("/etc/cron.d/evil", b"x"), "absolute"),
        (member("link.png", kind=tarfile.SYMTYPE), "symlink"),
        (member("hard.png", kind=tarfile.LNKTYPE), "hard link"),
        (member("dev.png", kind=tarfile.CHRTYPE), "device"),
        (member("dir.png", kind=tarfile.DIRTYPE), "folder"),
        (member("fifo.png", kind=tarfile.FIFOTYPE), "fifo"),
        (member("unasked.png", b"x"), "not requested"),
        (member("a.png", b"x" * 20), "size 20 differs"),
    ],
)
def test_hostile_members_are_refused_and_never_written(
    bad: tuple[tarfile.TarInfo, bytes], reason: str
) -> None:
    """Links, devices, folders, `..`, absolute, unrequested and wrong-size members are
    refused (skipped, reported); the requested file around them still arrives."""
    stream = tar_bytes(bad, member("good.png", b"good"))
    wanted = {
        b"good.png": 4,
        b"a.png": 10,
        b"link.png": 0,
        b"hard.png": 0,
        b"dev.png": 0,
        b"dir.png": 0,
        b"fifo.png": 0,
        b"../escape.png": 1,
        b"/etc/cron.d/evil": 1,
    }
    got, refused = read(stream, wanted)
    assert got == {b"good.png": b"good"}
    assert len(refused) == 1 and reason in refused[0][1]


def test_repeated_name_is_refused_the_second_time() -> None:
    """A name sent twice is only taken once (a second copy cannot overwrite the first)."""
    stream = tar_bytes(member("a.png", b"first"), member("a.png", b"evil!"))
    got, refused = read(stream, {b"a.png": 5})
    assert got == {b"a.png": b"first"} and "not requested" in refused[0][1]


def test_short_stream_and_bad_checksum_raise() -> None:
    """A stream cut inside a member, or a corrupted header, stops the reader with TarError."""
    stream = tar_bytes(member("a.png", b"x" * 2000))
    with pytest.raises(TarError):
        read(stream[:1200], {b"a.png": 2000})
    corrupted = bytearray(stream)
    corrupted[0] ^= 0xFF
    with pytest.raises(TarError, match="checksum"):
        read(bytes(corrupted), {b"a.png": 2000})


def sync(server: SshdServer, remote: Path, media: Path, state: Path) -> RunOutcome:
    return run_sync(make_container(server, remote, kind="forge"), media, state)


def fake_tools(folder: Path, scripts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        (folder / name).write_text("#!/bin/sh\n" + body)
        (folder / name).chmod(0o755)
    return folder


@pytest.mark.parametrize(
    ("case", "tools", "transfer"),
    [
        ("gnu tools: find + tar", {}, "tar"),
        ("no tar", {"tar": "exit 127\n"}, "sftp"),
        ("no find, no tar", {"find": "exit 127\n", "tar": "exit 127\n"}, "sftp"),
    ],
)
def test_every_path_gives_the_identical_tree(
    sshd: SshdServer, tmp_path: Path, case: str, tools: dict[str, str], transfer: str
) -> None:
    """The tar fast path and the SFTP fallbacks produce the same tree, hostile names and
    real fixtures included."""
    remote = tmp_path / "remote"
    forge_tree(remote)
    server = sshd
    if tools:
        server = SshdServer(tmp_path / "sshd", path_dirs=[fake_tools(tmp_path / "bin", tools)])
        server.start()
    try:
        outcome = sync(server, remote, tmp_path / "media", tmp_path / "state")
    finally:
        if tools:
            server.stop()
    assert outcome.result == "success", (case, outcome.error)
    assert outcome.sync.transfer == transfer
    assert tree_files(tmp_path / "media" / "forge-a") == expected_forge_files(remote)


def test_a_lying_tar_writes_nothing_outside_and_nothing_wrong(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A remote `tar` that sends `../` members, a symlink, an absolute path and a file of
    the wrong size: nothing is written outside the library, nothing wrong lands; what the
    stream did not deliver properly is fetched over SFTP in the same run, and the refusal
    is logged."""
    remote = tmp_path / "remote"
    write_file(remote / "txt2img-images" / "good.png", b"good bytes", 1.7e9)
    write_file(remote / "txt2img-images" / "big.png", b"0123456789", 1.7e9)
    evil = tmp_path / "evil.tar"
    evil.write_bytes(
        tar_bytes(
            member("../../../../escaped.png", b"evil"),
            member("/tmp/absolute-evil.png", b"evil"),
            member("txt2img-images/link.png", kind=tarfile.SYMTYPE),
            member("txt2img-images/big.png", b"short"),
            member("txt2img-images/good.png", b"good bytes"),
        )
    )
    liar = fake_tools(
        tmp_path / "bin",
        {"tar": f'[ "$1" = --version ] && exec /bin/tar --version\ncat >/dev/null; cat {evil}\n'},
    )
    server = SshdServer(tmp_path / "sshd", path_dirs=[liar]).start()
    try:
        outcome = sync(server, remote, tmp_path / "media", tmp_path / "state")
    finally:
        server.stop()
    library = tmp_path / "media" / "forge-a"
    assert tree_files(library) == tree_files(remote)
    assert not list(tmp_path.rglob("escaped.png"))
    assert not Path("/tmp/absolute-evil.png").exists()
    assert outcome.result == "success"
    log = (tmp_path / "log.jsonl").read_text()
    assert "tar_fallback" in log and "refused member" in log


def test_a_member_with_another_mtime_than_listed_is_refused() -> None:
    """Same name and size as listed but another mtime: a newer version than the one
    listed, so it is refused (the caller fetches it another way) rather than trusted."""
    stream = tar_member(b"a.png", b"12345", mtime=1_700_000_100) + bytes(1024)
    reader = TarReader(io.BytesIO(stream), {b"a.png": 5}, {b"a.png": 1_700_000_000})
    got: list[bytes] = []
    reader.members(lambda _n, chunk: got.append(chunk), lambda _n: None, lambda *_a: None)
    assert got == []
    assert reader.refused == [(b"a.png", "mtime 1700000100 differs from the listing's 1700000000")]


def test_a_write_failure_ends_its_member_with_the_oserror_and_the_stream_goes_on() -> None:
    """A member whose local write fails ends with that OSError (errno intact, the rest of
    its data skipped, never half-written); the next member is still read whole."""
    stream = tar_bytes(member("full.png", b"F" * 70_000), member("next.png", b"next"))
    reader = TarReader(io.BytesIO(stream), {b"full.png": 70_000, b"next.png": 4})
    written: dict[bytes, bytes] = {}
    ended: dict[bytes, OSError | None] = {}

    def write(name: bytes, chunk: bytes) -> None:
        if name == b"full.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[name] = written.get(name, b"") + chunk

    reader.members(write, lambda _n: None, ended.__setitem__)
    failure = ended[b"full.png"]
    assert failure is not None and failure.errno == errno.ENOSPC
    assert ended[b"next.png"] is None and written == {b"next.png": b"next"}


@pytest.mark.parametrize(
    ("code", "kind"),
    [(errno.ENOSPC, "disk_full"), (errno.EDQUOT, "disk_full"), (errno.EIO, "transfer")],
)
def test_a_member_the_disk_could_not_take_is_classified_by_its_errno(
    tmp_path: Path, code: int, kind: str
) -> None:
    """Regression (issue 15): the tar fetch decided `disk_full` by finding "No space" in
    the message. The kind now comes from the write's errno (ENOSPC or EDQUOT: disk_full,
    as over SFTP; anything else: transfer, fetched again over SFTP), whatever the text."""
    temp = tmp_path / "a.png.tmp"
    temp.write_bytes(b"part")
    item = FetchItem(RemoteFile(b"a.png", 10, 0), os.fsencode(tmp_path / "a.png"))
    failure = OSError(code, "localised text without the English words")
    got = Received(item, os.fsencode(temp), -1, hashlib.sha256(), 0, 4, failure)
    outcomes: list[Fetched] = []
    strategy = TarStrategy(None, "/root")  # type: ignore[arg-type]  # a failed member needs no remote
    strategy._hand_over([got], False, outcomes.append, set())
    assert [(o.temp, o.error_kind) for o in outcomes] == [(None, kind)]
    assert outcomes[0].error == "local write failed: localised text without the English words"
    assert not temp.exists()


def test_progress_counts_each_file_as_it_arrives_through_tar(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 25, item 3): through the tar stream, files are handed over in
    batches (every 2 s or 1,000 files) and the file counter sat at 0/N until then. Each
    file counts once it has arrived whole, before its batch is handed over, and once only;
    the bytes counted are the files' own (not the tar's headers and padding)."""
    from forge_syncd.jobs.progress import Progress
    from forge_syncd.library.manifest import Manifest
    from forge_syncd.sync import sync_container
    from forge_syncd.transports.ssh.transport import SshTransport
    from tests.support.runs import context

    remote = tmp_path / "remote"
    sizes = [3000 + index for index in range(12)]
    for index, size in enumerate(sizes):
        write_file(remote / f"day/{index:02d}.png", os.urandom(size), 1_700_000_000)
    container = make_container(sshd, remote)
    progress = Progress()
    at_hand_over: list[int] = []
    hand_over = TarStrategy._hand_over

    def spy(self: TarStrategy, batch: list[Received], *args: object) -> None:
        at_hand_over.append(progress.files_done)
        hand_over(self, batch, *args)  # type: ignore[arg-type]

    manifest = Manifest.open(tmp_path / "state")
    box = SshTransport(container)
    TarStrategy._hand_over = spy  # type: ignore[method-assign]
    try:
        outcome = sync_container(context(container, tmp_path / "media", manifest, box, progress))
    finally:
        TarStrategy._hand_over = hand_over  # type: ignore[method-assign]
        box.close()
        manifest.close()
    assert outcome.result == "success" and outcome.sync.transfer == "tar"
    assert at_hand_over and at_hand_over[0] >= 1, at_hand_over
    final = progress.finished()
    assert final is not None
    assert (final["files_done"], final["files_total"]) == (12, 12)
    assert final["bytes_done"] == final["bytes_total"] == sum(sizes)


def pax_bytes(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A PAX tar stream, as the Docker engine's archive endpoint makes (Go's archive/tar)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_pax_header_names_the_member_that_follows() -> None:
    """A PAX extended header's `path` (a name ustar cannot hold: non-ASCII, long) names the
    next member; the checks are the same (an unrequested PAX name is refused)."""
    name = "🎨 " + "y" * 150 + ".png"
    stream = pax_bytes(member(name, b"art"), member("é-other.png", b"no"))
    got, refused = read(stream, {name.encode(): 3})
    assert got == {name.encode(): b"art"}
    assert refused == [("é-other.png".encode(), "not requested (or sent twice)")]


def test_a_pax_header_whose_records_do_not_hold_stops_the_stream() -> None:
    """A PAX record whose length points past the header is not trusted: TarError."""
    stream = bytearray(pax_bytes(member("é.png", b"x")))
    body = stream[512:1024]
    at = body.index(b" path=")
    stream[512 + at - 2 : 512 + at] = b"99"
    with pytest.raises(TarError):
        read(bytes(stream), {"é.png".encode(): 1})
