"""The Docker transport against engines and containers that fail or misbehave: an engine
that is down is one clear ConnectError, a missing or stopped container is `unreachable`
with the engine's words, output that never ends is cut at its bound and its process
killed, and a container stopped in the middle of a fetch leaves no partial file."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from forge_syncd.config.model import ContainerConfig, DockerConfig, SyncConfig
from forge_syncd.errorkinds import UNREACHABLE
from forge_syncd.remote.errors import ConnectError, RemoteError
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem
from forge_syncd.transports.docker import execs
from forge_syncd.transports.docker.engine import Engine, EngineDown
from forge_syncd.transports.docker.transport import DockerTransport
from forge_syncd.transports.shell.result import OutputTooLarge
from tests.support.docker import Container, DockerEngine
from tests.support.faults import temp_files
from tests.support.trees import clean_copies, write_file

OLD = 1_700_000_000


def transport(host: str, container: str, **sync: object) -> DockerTransport:
    return DockerTransport(
        ContainerConfig(
            name="home-comfy",
            kind="generic",
            host="",
            root="/data",
            folders=(),
            transport="docker",
            docker=DockerConfig(host=host, container=container),
            sync=dataclasses.replace(SyncConfig(), settle_s=0.0, **sync),  # type: ignore[arg-type]
        )
    )


def test_an_engine_that_is_down_is_one_clear_connect_error(tmp_path: Path) -> None:
    """No engine on the socket: probe, list and watch raise EngineDown (kind connect: the
    container shows unreachable), naming the engine's address; no other exception."""
    host = f"unix://{tmp_path}/docker.sock"
    box = transport(host, "comfyui")
    for call in (box.probe, box.list, box.watch):
        with pytest.raises(EngineDown) as caught:
            call()
        assert caught.value.kind in UNREACHABLE
        assert f"the Docker engine at {host} does not answer" in str(caught.value)


def test_a_missing_or_stopped_container_is_unreachable_with_the_engines_message(
    docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """A container name the engine does not know, and a stopped container, raise a
    ConnectError (status: unreachable) carrying what the engine said."""
    with pytest.raises(ConnectError) as caught:
        transport(docker_engine.host, "no-such-box").probe()
    assert "No such container: no-such-box" in str(caught.value)
    box = docker_run(docker_engine.busybox_image())
    box.stop()
    with pytest.raises(ConnectError) as caught:
        transport(docker_engine.host, box.name).list()
    assert caught.value.kind in UNREACHABLE and "is not running" in str(caught.value)


def test_output_that_never_ends_is_cut_at_its_bound_and_its_process_killed(
    docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """A script whose output never ends raises OutputTooLarge at `max_output`, and the
    processes it started in the container are gone afterwards, also one that writes
    nothing (a background `sleep`: closing the exec stream alone leaves it running; its
    exec's token kills it)."""
    box = docker_run(docker_engine.busybox_image())
    engine = Engine(docker_engine.host, box.name, "root", 30)
    with pytest.raises(OutputTooLarge):
        execs.run(engine, "sleep 617 & exec yes", max_output=1024 * 1024)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = box.sh("ps -o args | grep -c '^sleep 61[7]' || true").stdout.strip()
        if left == b"0":
            break
        time.sleep(0.2)
    assert left == b"0", "the endless process is still running"


def test_a_listing_past_max_listing_size_is_refused(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """A listing larger than `max_listing_size` is a ListingError naming the limit, not an
    unbounded read."""
    source = tmp_path / "outputs"
    for n in range(200):
        write_file(source / f"{n:03d}-{'x' * 100}.png", b"x", OLD)
    box = docker_run(docker_engine.gnu_image(), binds={source: "/data"})
    with pytest.raises(RemoteError, match="max_listing_size"):
        transport(docker_engine.host, box.name, max_listing_size=4096).list()


def test_a_container_stopped_mid_fetch_leaves_no_partial_file(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """The container is killed while a (rate-limited) fetch streams from it: the fetch
    ends (a RemoteError, or failures for what did not arrive), every file it delivered as
    a clean copy is byte-identical, and no temporary file is left behind for what it did
    not deliver. (The engine buffers an exec's output: the stream often outlives the
    container by the bytes tar had written; those are whole, and checked as such.)"""
    source = tmp_path / "outputs"
    for n in range(30):
        write_file(source / f"{n:02d}.png", os.urandom(1_000_000), OLD + n)
    box = docker_run(docker_engine.gnu_image(python=True), binds={source: "/data"})
    remote = transport(docker_engine.host, box.name, bwlimit=5 * 1024 * 1024)
    library = tmp_path / "library"
    library.mkdir()
    items = [FetchItem(f, os.path.join(os.fsencode(library), f.path)) for f in remote.list().files]
    done: list[Fetched] = []
    stopper = threading.Timer(2.0, box.kill)
    stopper.start()
    try:
        remote.fetch(items, FetchCallbacks(done.append), threading.Event())
    except RemoteError:
        pass
    finally:
        stopper.join()
    good = [f for f in done if f.temp is not None and not f.changed]
    for fetched in good:
        assert fetched.temp is not None
        with open(fetched.temp, "rb") as handle:
            assert handle.read() == (source / os.fsdecode(fetched.item.remote.path)).read_bytes()
    delivered = {os.path.basename(f.temp) for f in good if f.temp is not None}
    leftovers = [p for p in temp_files(library) if os.path.basename(p) not in delivered]
    assert leftovers == []


FAKE_TAR = """#!/bin/sh
case "$1" in --version) echo 'tar (GNU tar) 1.34'; exit 0;; esac
cat >/dev/null
exec cat /lies.tar
"""


def lying_tar(tmp_path: Path, stream: bytes) -> Path:
    """A folder holding a `tar` that says it is GNU tar and sends `stream` whatever it is
    asked (mounted at /usr/local/bin: first on exec's PATH), and the stream."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "tar").write_text(FAKE_TAR)
    (tools / "tar").chmod(0o755)
    (tmp_path / "lies.tar").write_bytes(stream)
    return tools


def symlink_member(name: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/shadow"
        archive.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize(
    "stream",
    [b"not a tar stream at all" + b"\1" * 2000, symlink_member("a.png")],
    ids=["garbage", "symlink-member"],
)
def test_a_lying_tar_in_the_container_falls_back_and_delivers_the_true_bytes(
    tmp_path: Path,
    docker_engine: DockerEngine,
    docker_run: Callable[..., Container],
    stream: bytes,
) -> None:
    """The container's `tar` sends garbage, or a symlink member under a requested name:
    nothing of it is written (a symlink member is refused and reported), and every file is
    fetched again through the archive endpoint in the same call, byte-identical."""
    source = tmp_path / "outputs"
    files = {"a.png": os.urandom(5000), "day/b.png": os.urandom(7000)}
    for name, data in files.items():
        write_file(source / name, data, OLD)
    tools = lying_tar(tmp_path, stream)
    box = docker_run(
        docker_engine.gnu_image(python=True),
        binds={source: "/data", tools: "/usr/local/bin", tmp_path / "lies.tar": "/lies.tar"},
    )
    remote = transport(docker_engine.host, box.name)
    library = tmp_path / "library"
    items = [FetchItem(f, os.path.join(os.fsencode(library), f.path)) for f in remote.list().files]
    for item in items:
        os.makedirs(os.path.dirname(item.target), exist_ok=True)
    done: list[Fetched] = []
    report = remote.fetch(items, FetchCallbacks(done.append), threading.Event())
    assert report.fallback == len(files) and report.fallback_reason
    if b"not a tar" not in stream:
        assert [name for name, _ in report.refused] == [b"a.png"]
    assert clean_copies(done) == files


ENDLESS_FIND = """#!/bin/sh
case "$*" in *-maxdepth*) exec /usr/bin/find "$@";; esac
exec sleep 600
"""


def test_a_listing_that_never_ends_is_ended_by_cancel(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """The container's `find` goes silent for good while it lists (a hung filesystem):
    the run's listing, asked in the probe's own exec, has no idle timeout, so a stop, pause
    or reload (`cancel`) must end it, with RemoteError("cancelled")."""
    source = tmp_path / "outputs"
    write_file(source / "a.png", b"a", OLD)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "find").write_text(ENDLESS_FIND)
    (tools / "find").chmod(0o755)
    box = docker_run(
        docker_engine.gnu_image(python=True), binds={source: "/data", tools: "/usr/local/bin"}
    )
    remote = transport(docker_engine.host, box.name)
    cancel = threading.Event()
    raised: list[BaseException] = []

    def listing() -> None:
        try:
            remote.list(cancel=cancel)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=listing, daemon=True)
    thread.start()
    thread.join(2.0)
    assert thread.is_alive(), raised  # still listing: nothing else ends it
    cancel.set()
    thread.join(60)
    assert not thread.is_alive(), "the listing went on after cancel"
    assert len(raised) == 1 and isinstance(raised[0], RemoteError), raised
    assert "cancelled" in str(raised[0])
