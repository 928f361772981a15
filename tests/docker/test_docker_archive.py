"""The first sync's fast path over Docker: a folder whose files are mostly planned comes in
one archive of the engine's (`archive.stream_tree`), with every rule of the tar stream: only
the planned members are written, each file's sha256 is of its bytes, a file modified at or
after the container's clock reading is racy, a file that changed after its listing is never
delivered as unchanged, and a folder that grew past its listing is not read to its end."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forge_syncd.config.model import ContainerConfig, DockerConfig, SyncConfig
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, TransferMethod
from forge_syncd.transports.docker import archive, execs
from forge_syncd.transports.docker import transport as docker_transport
from forge_syncd.transports.docker.engine import Engine, ExecStream
from forge_syncd.transports.docker.fetch import Landing
from forge_syncd.transports.docker.transport import DockerTransport
from forge_syncd.transports.receive import RateLimiter
from forge_syncd.transports.shell.probe import PROBE_SCRIPT
from tests.support.docker import Container, DockerEngine
from tests.support.engine_proxy import CuttingEngineProxy
from tests.support.trees import clean_copies, write_file

OLD = 1_700_000_000


def transport(host: str, container: str) -> DockerTransport:
    return DockerTransport(
        ContainerConfig(
            name="home-comfy",
            kind="generic",
            host="",
            root="/data",
            folders=(),
            transport="docker",
            docker=DockerConfig(host=host, container=container),
            sync=dataclasses.replace(SyncConfig(), settle_s=0.0),
        )
    )


def day_of_files(source: Path, count: int = 24) -> dict[str, bytes]:
    """Write `count` old files under source/day/; return name -> bytes."""
    files = {f"day/{n:03d}.png": os.urandom(3000 + n) for n in range(count)}
    for name, data in files.items():
        write_file(source / name, data, OLD)
    return files


def fetch(
    remote: DockerTransport, library: Path, keep: Callable[[bytes], bool] = lambda _p: True
) -> tuple[list[Fetched], TransferMethod | None]:
    """List, then fetch the listed files `keep` accepts; return what was delivered and how."""
    items = [
        FetchItem(f, os.path.join(os.fsencode(library), f.path))
        for f in remote.list().files
        if keep(f.path)
    ]
    for item in items:
        os.makedirs(os.path.dirname(item.target), exist_ok=True)
    done: list[Fetched] = []
    report = remote.fetch(items, FetchCallbacks(done.append), threading.Event())
    return done, report.transfer


def test_a_first_sync_comes_through_one_archive_with_only_the_planned_files(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """Most of the folder planned: it comes through the archive endpoint; each planned file
    is delivered once with its bytes and their sha256, not racy; the files left out of the
    plan are never written (no temporary file holds them); a file written just now is
    delivered racy (its mtime is not older than the clock read before the request)."""
    source = tmp_path / "outputs"
    files = day_of_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    remote = transport(docker_engine.host, box.name)
    # Stamped a few seconds ahead of the container's clock (less than the future slack):
    # racy however slow the machine is in between.
    now = int(box.sh("date +%s").stdout)
    write_file(source / "day" / "fresh.png", b"just written", now + 8)
    files["day/fresh.png"] = b"just written"
    left_out = {b"day/000.png", b"day/001.png"}
    library = tmp_path / "library"
    done, method = fetch(remote, library, lambda path: path not in left_out)
    assert method == TransferMethod.ARCHIVE
    got = {}
    for fetched in done:
        assert fetched.temp is not None and not fetched.changed, fetched
        with open(fetched.temp, "rb") as handle:
            data = handle.read()
        assert fetched.sha256 == hashlib.sha256(data).hexdigest()
        assert fetched.racy == (fetched.item.remote.path == b"day/fresh.png"), fetched
        got[os.fsdecode(fetched.item.remote.path)] = data
    assert got == {k: v for k, v in files.items() if os.fsencode(k) not in left_out}
    written = {p for p in (library / "day").iterdir()}
    assert written == {Path(os.fsdecode(f.temp or b"")) for f in done}


def test_a_file_changed_after_its_listing_or_during_the_stream_is_not_delivered_unchanged(
    tmp_path: Path,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file rewritten (same size, newer mtime) between the listing and the archive is
    refused by the archive's reader and never delivered as the listed file; a file touched
    while the archive streamed (after the engine read it) is delivered `changed` by the
    check that follows the stream."""
    source = tmp_path / "outputs"
    files = day_of_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    remote = transport(docker_engine.host, box.name)
    streamed = archive.stream_tree

    def stream_then_touch(*args: object, **kwargs: object) -> str:
        error = streamed(*args, **kwargs)  # type: ignore[arg-type]
        os.utime(source / "day" / "002.png", (OLD + 50, OLD + 50))
        return error

    monkeypatch.setattr(archive, "stream_tree", stream_then_touch)
    items = [
        FetchItem(f, os.path.join(os.fsencode(tmp_path), b"lib", f.path))
        for f in remote.list().files
    ]
    os.makedirs(tmp_path / "lib" / "day")
    write_file(source / "day" / "003.png", os.urandom(len(files["day/003.png"])), OLD + 60)
    done: list[Fetched] = []
    report = remote.fetch(items, FetchCallbacks(done.append), threading.Event())
    assert report.transfer == TransferMethod.ARCHIVE
    outcome = {f.item.remote.path: f for f in done}
    assert outcome[b"day/002.png"].changed
    rewritten = outcome[b"day/003.png"]
    assert rewritten.temp is None or rewritten.changed, rewritten
    assert sum(1 for f in done if f.temp is not None and not f.changed) == len(files) - 2


def test_a_folder_that_grew_past_its_listing_is_not_read_to_its_end(
    tmp_path: Path,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file added after the listing makes the folder's archive larger than the listing
    allows (no slack here): the stream is cut with a clear error, and what it did not
    deliver still arrives through the tar stream in the same fetch."""
    source = tmp_path / "outputs"
    files = day_of_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    remote = transport(docker_engine.host, box.name)
    listed = remote.list().files
    write_file(source / "day" / "big.bin", os.urandom(3 * 1024 * 1024), OLD)
    monkeypatch.setattr(archive, "ARCHIVE_SLACK", 0)
    items = [FetchItem(f, os.path.join(os.fsencode(tmp_path), b"lib", f.path)) for f in listed]
    os.makedirs(tmp_path / "lib" / "day")
    landing = Landing(lambda _f: None, lambda _n: None, lambda _i: None)
    error = archive.stream_tree(
        remote.engine,
        b"/data",
        b"day",
        items,
        landing,
        RateLimiter(None),
        threading.Event(),
        time.time_ns(),
        sum(f.size for f in listed),
    )
    assert "larger than its listing" in error
    landing.hand_over(set(), None)
    done: list[Fetched] = []
    remote.fetch(items, FetchCallbacks(done.append), threading.Event())
    assert sorted(f.item.remote.path for f in done if f.temp and not f.changed) == sorted(
        os.fsencode(name) for name in files
    )


def test_a_run_probes_and_lists_in_one_exec_and_reads_no_clock_of_its_own(
    tmp_path: Path,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each exec costs the engine ~60 ms: a first sync's run asks what the container
    offers, its clock and its listing in one, and the archive's read-after clock comes
    from that probe; after the stream only the check runs. The next run probes again (the
    container may have been replaced meanwhile), as does a run after an old probe; a probe
    in the same run is not repeated."""
    source = tmp_path / "outputs"
    day_of_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    remote = transport(docker_engine.host, box.name)
    scripts: list[str] = []
    started = execs.start

    def spy(engine: Engine, script: str, stdin: bytes | None) -> ExecStream:
        scripts.append(script)
        return started(engine, script, stdin)

    monkeypatch.setattr(execs, "start", spy)
    done, method = fetch(remote, tmp_path / "library")
    assert method == TransferMethod.ARCHIVE
    assert len(done) == 24 and all(f.temp is not None and not f.changed for f in done)
    assert scripts[0].startswith(PROBE_SCRIPT) and "forge-syncd-listing" in scripts[0]
    assert len(scripts) == 2, scripts  # the probe with its listing; the check after
    remote.probe()
    assert len(scripts) == 2
    remote.end_run()
    assert len(remote.list().files) == 24
    assert len(scripts) == 3 and scripts[2].startswith(PROBE_SCRIPT)
    # A cleanup ends no run: its probe serves a sync after it only while it is recent.
    monkeypatch.setattr(docker_transport, "PROBE_REUSE_S", 0.0)
    assert len(remote.list().files) == 24
    assert len(scripts) == 4 and "forge-syncd-listing" in scripts[3]


def member_ends(answer: bytes) -> list[int]:
    """Where each file of an archive answer (HTTP head, then the tar) ends, in bytes from
    the answer's start (its data padded to the tar's 512-byte blocks)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    start = len(head) + 4
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return [
            start + m.offset_data + -(-m.size // 512) * 512
            for m in archive.getmembers()
            if m.isfile()
        ]


@pytest.mark.parametrize("where", ["between-members", "inside-a-member"])
def test_an_archive_cut_short_delivers_whole_files_only_and_the_rest_by_tar(
    tmp_path: Path,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
    where: str,
) -> None:
    """The engine's archive answer ends early (a broken connection), exactly after a file
    or in the middle of one: the files it carried whole are delivered, the one cut is
    never delivered from it (no temporary file left), and the fetch brings every other
    file through the tar stream in the same call, byte-identical."""
    source = tmp_path / "outputs"
    files = day_of_files(source)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    proxy = CuttingEngineProxy(docker_engine.socket_path, Path(tempfile.mkdtemp()) / "e.sock")
    try:
        remote = transport(proxy.host, box.name)
        library = tmp_path / "whole"
        done, method = fetch(remote, library)
        assert method == TransferMethod.ARCHIVE and len(done) == len(files)
        ends = member_ends(proxy.captured)
        assert len(ends) == len(files)
        proxy.cut_at = ends[9] if where == "between-members" else ends[9] - 1000
        remote.end_run()
        library = tmp_path / "cut"
        done, method = fetch(remote, library)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and method == TransferMethod.ARCHIVE
    assert clean_copies(done) == files
    assert sorted(p.name for p in (library / "day").iterdir()) == sorted(
        os.path.basename(os.fsdecode(f.temp or b"")) for f in done
    )
