"""A no-change poll on an open connection: the listing's shell started ahead of time, and a
listing whose bytes did not change reused without parsing, against a real sshd."""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, RemoteFile
from forge_syncd.transports.ssh.connection import Connection, after_marker, connect, sh_command
from forge_syncd.transports.ssh.tarfetch import TarStrategy
from tests.conftest import make_container
from tests.support.runs import Poller
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file


@pytest.fixture
def connection(sshd: SshdServer) -> Connection:
    container = make_container(sshd, Path("/"))
    opened = connect(container.host, container.ssh)
    yield opened  # type: ignore[misc]
    opened.close()


def waiting_shells(marker: str) -> set[int]:
    """PIDs of processes whose command line holds `marker` (the prepared remote shells)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def listing_script(folder: Path, marker: str) -> str:
    return f"# {marker}\nls -1 {shlex.quote(str(folder))}\necho pid=$$\n"


def test_the_next_listing_shell_waits_and_runs_the_script_only_when_released(
    connection: Connection, tmp_path: Path
) -> None:
    """After a run, the next run's shell is already started and blocked before the script;
    released, it runs the script then (it sees a file created after it started)."""
    marker = f"forge-prepared-{uuid.uuid4().hex}"
    (tmp_path / "a").write_bytes(b"a")
    first = connection.run_script(listing_script(tmp_path, marker))
    assert first.status == 0 and b"a\n" in first.stdout
    assert wait_for(lambda: bool(waiting_shells(marker)))
    waiting = waiting_shells(marker)
    (tmp_path / "b").write_bytes(b"b")
    second = connection.run_script(listing_script(tmp_path, marker))
    assert second.status == 0
    assert b"a\nb\n" in second.stdout
    pid = int(second.stdout.split(b"pid=")[1].split()[0])
    assert pid in waiting  # the script ran in the shell that was waiting
    assert wait_for(lambda: bool(waiting_shells(marker) - waiting))  # and the next one waits


def test_a_prepared_shell_that_died_is_replaced_by_a_fresh_run(
    connection: Connection, tmp_path: Path
) -> None:
    marker = f"forge-prepared-{uuid.uuid4().hex}"
    (tmp_path / "a").write_bytes(b"a")
    connection.run_script(listing_script(tmp_path, marker))
    assert wait_for(lambda: bool(waiting_shells(marker)))
    for pid in waiting_shells(marker):
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not waiting_shells(marker))
    again = connection.run_script(listing_script(tmp_path, marker))
    assert again.status == 0 and b"a\n" in again.stdout
    assert connection.run_script(listing_script(tmp_path, marker)).stdout.startswith(b"a\n")


def test_at_most_two_shells_wait_the_oldest_goes_first(
    connection: Connection, tmp_path: Path
) -> None:
    """Scripts of an older config (another root) do not pile up waiting shells."""
    first, second, third = (f"forge-prepared-{uuid.uuid4().hex}" for _ in range(3))
    connection.run_script(listing_script(tmp_path, first))
    connection.run_script(listing_script(tmp_path, second))
    assert wait_for(lambda: bool(waiting_shells(first)) and bool(waiting_shells(second)))
    result = connection.run_script(f"# {third}\necho done")
    assert result.stdout == b"done\n"
    assert wait_for(lambda: not waiting_shells(first))  # it ran nothing and went away
    assert waiting_shells(second) and wait_for(lambda: bool(waiting_shells(third)))


@pytest.fixture
def poller(sshd: SshdServer, tmp_path: Path) -> Poller:
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    for n in range(30):
        write_file(remote / f"day-{n % 3}" / f"{n:05d}.png", os.urandom(100 + n), 1_700_000_000)
    write_file(remote / "notes.txt", b"not media", 1_700_000_000)
    opened = Poller(make_container(sshd, remote, include=("*.png",)), media, state)
    yield opened  # type: ignore[misc]
    opened.close()


def settled(poller: Poller) -> None:
    """Sync until a poll reuses its listing (the first fetches, the second plans)."""
    outcomes = [poller.sync() for _ in range(3)]
    assert [o.files for o in outcomes] == [30, 0, 0]
    assert [o.sync.listing_reused for o in outcomes] == [False, False, True]
    assert outcomes[2].remote_files == 30 and outcomes[2].result == "success"


def reused_again(poller: Poller) -> bool:
    """After a run that changed the manifest, the next run plans (and remembers), the one
    after reuses."""
    planned, reused = poller.sync(), poller.sync()
    assert planned.files == reused.files == 0
    return not planned.sync.listing_reused and reused.sync.listing_reused


def test_an_unchanged_listing_is_reused_but_a_lost_local_copy_is_still_fetched(
    poller: Poller, tmp_path: Path
) -> None:
    settled(poller)
    local = tmp_path / "media" / "forge-a"
    (local / "day-0" / "00000.png").unlink()
    (local / "day-1" / "00001.png").write_bytes(b"truncated")
    again = poller.sync()
    assert again.files == 2 and not again.sync.listing_reused
    assert tree_files(local) == {
        path: data
        for path, data in tree_files(tmp_path / "remote").items()
        if path.endswith(b".png")
    }
    assert reused_again(poller)


def test_a_new_remote_file_a_config_change_or_a_manifest_change_plans_again(
    poller: Poller, tmp_path: Path
) -> None:
    settled(poller)
    write_file(tmp_path / "remote" / "day-0" / "new.png", b"new", 1_700_000_000)
    new = poller.sync()
    assert new.files == 1 and not new.sync.listing_reused
    assert reused_again(poller)

    poller.container = dataclasses.replace(
        poller.container,
        sync=dataclasses.replace(poller.container.sync, exclude=("day-2/*",)),
    )
    narrowed = poller.sync()
    assert not narrowed.sync.listing_reused and narrowed.remote_files == 21
    assert poller.sync().sync.listing_reused

    # Another process forgets a file: this run must notice and record it again (adopted).
    with sqlite3.connect(tmp_path / "state" / "manifest.sqlite") as db:
        db.execute("DELETE FROM files WHERE path = ?", (b"day-0/00000.png",))
    forgotten = poller.sync()
    assert not forgotten.sync.listing_reused
    assert poller.manifest.files.records("forge-a")[b"day-0/00000.png"].state == "synced"
    assert reused_again(poller)


def test_a_prepared_shell_hands_the_script_its_whole_stdin(connection: Connection) -> None:
    """`open_script` releases the waiting shell with one line; everything sent after it is
    the script's stdin, byte for byte (the tar stream's names travel this way)."""
    marker = f"forge-prepared-{uuid.uuid4().hex}"
    script = f"# {marker}\necho pid=$$\nexec cat\n"
    connection.shells.prepare(script)
    assert wait_for(lambda: bool(waiting_shells(marker)))
    waiting = waiting_shells(marker)
    channel = connection.open_script(script)
    data = b"\nfirst line was empty\0-n\0$(touch /tmp/x)\0" + bytes(range(256)) * 64
    channel.sendall(data)
    channel.shutdown_write()
    out = bytearray()
    while chunk := channel.recv(65536):
        out += chunk
    channel.close()
    head, _, rest = after_marker(bytes(out)).partition(b"\n")
    assert int(head.removeprefix(b"pid=")) in waiting
    assert rest == data
    # Nothing waits any more; a second open starts its own shell and gets the same.
    assert wait_for(lambda: not waiting_shells(marker))
    fresh = connection.open_script(script)
    fresh.sendall(b"x")
    fresh.shutdown_write()
    got = bytearray()
    while chunk := fresh.recv(65536):
        got += chunk
    assert bytes(got).endswith(b"\nx")


def test_a_tar_shell_started_early_is_never_left_waiting(poller: Poller, tmp_path: Path) -> None:
    """A run whose listing changed starts the remote tar's shell while it plans (every sync
    in these tests fetches through it); the fetch uses it, and a run that ends up fetching
    nothing closes it."""
    root = str(tmp_path / "remote")
    tar_shells = f"cd -- {root}"  # the tar script's first line, in the shell's command line

    def waiting_tar() -> set[int]:
        return {pid for pid in waiting_shells(tar_shells) if b"tar -c" in cmdline(pid)}

    assert poller.sync().files == 30
    assert wait_for(lambda: not waiting_tar())
    write_file(tmp_path / "remote" / "day-0" / "young.png", b"settling", time.time() + 3600)
    poller.container = dataclasses.replace(
        poller.container, sync=dataclasses.replace(poller.container.sync, settle_s=60.0)
    )
    nothing = poller.sync()  # changed listing, but the new file is still settling
    assert nothing.files == 0 and not nothing.sync.listing_reused
    assert wait_for(lambda: not waiting_tar())


def test_the_tar_strategy_alone_uses_the_shell_it_prepared(
    connection: Connection, tmp_path: Path
) -> None:
    """`TarStrategy.prepare` starts the tar's shell for that strategy only: another
    strategy on the same root neither closes it (`discard`) nor uses it (`fetch` starts its
    own tar); the strategy that prepared it fetches through it, and none is left waiting."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a" * 1000, 1_700_000_000)
    (tmp_path / "local").mkdir()
    item = FetchItem(
        RemoteFile(b"a.png", 1000, 1_700_000_000 * 10**9), bytes(tmp_path / "local" / "a.png")
    )
    tar_shells = f"cd -- {remote}"

    def waiting_tar() -> set[int]:
        return {pid for pid in waiting_shells(tar_shells) if b"tar -c" in cmdline(pid)}

    def fetch(strategy: TarStrategy) -> bytes:
        fetched: list[Fetched] = []
        strategy.fetch([item], FetchCallbacks(fetched.append), threading.Event())
        assert [f.error for f in fetched] == [None] and fetched[0].temp is not None
        return Path(os.fsdecode(fetched[0].temp)).read_bytes()

    ours, other = TarStrategy(connection, str(remote)), TarStrategy(connection, str(remote))
    ours.prepare()
    assert wait_for(lambda: bool(waiting_tar()))
    waiting = waiting_tar()
    other.discard()
    assert fetch(other) == b"a" * 1000
    assert not wait_for(lambda: waiting_tar() != waiting, timeout=1)  # still ours, waiting
    assert fetch(ours) == b"a" * 1000
    assert wait_for(lambda: not waiting_tar())  # ours ran the tar: nothing waits
    ours.discard()  # used already: nothing to close


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_large_remote_output_arrives_whole_through_the_channel_buffer(
    connection: Connection,
) -> None:
    """Every channel's stdout goes through ChunkPipe (`paramiko_patch`): a 3 MB remote
    output arrives whole, in order."""
    result = connection.run(sh_command("head -c 3000000 /dev/zero | tr '\\0' x"))
    assert result.stdout == b"x" * 3_000_000


def test_the_first_listing_after_a_connect_comes_with_the_probe(tmp_path: Path) -> None:
    """The capability probe lists the container in the same command, so the first sync
    after a connect runs `find -P` once (not a probe and then a listing of its own: over a
    WAN, three round trips and a shell less); the tree arrives whole."""
    from tests.support.hostile import write_tool
    from tests.support.trees import write_file

    calls = tmp_path / "find-calls"
    tools = write_tool(
        tmp_path / "tools",
        "find",
        f'#!/bin/sh\n[ "$1" = -P ] && echo listed >> {calls}\nexec /usr/bin/find "$@"\n',
    )
    server = SshdServer(tmp_path / "sshd", path_dirs=[tools]).start()
    try:
        remote = tmp_path / "remote"
        for i in range(5):
            write_file(remote / f"{i}.png", b"x" * (i + 1), 1_700_000_000)
        poller = Poller(make_container(server, remote), tmp_path / "media", tmp_path / "state")
        try:
            first = poller.sync()
            assert first.files == 5 and first.sync.listing == "find"
            assert calls.read_text().count("listed") == 1
            assert poller.sync().files == 0  # later polls list on their own (prepared shell)
            assert calls.read_text().count("listed") == 2
        finally:
            poller.close()
    finally:
        server.stop()
