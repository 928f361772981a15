"""Several connections per container (`sync.connections`) through the emulated WAN link with
a per-connection rate cap (a lossy path), against a real sshd: files spread over several
tar streams arrive byte-identical; a connection reset mid-stream leaves its files to the
kept-open one in the same run; an sshd that refuses extra logins (`MaxStartups`) still
syncs; cancel and kill -9 of the real daemon mid-run leave nothing partial under a final
name, and the next run lands the rest."""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.cli import BIN, write_config
from tests.support.faults import manifest_rows, sigkill, spawn_daemon, temp_files
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file
from tests.support.wan import WanLink, through

OLD = 1_700_000_000.0
MB = 1_000_000


def write_media(
    remote: Path, count: int, low: int, high: int, seed: int, folder: str = "day"
) -> dict[bytes, bytes]:
    """Write `count` files of random sizes in [low, high] under remote/`folder`; return
    {relative path: bytes}."""
    rng = random.Random(seed)
    files = {}
    for n in range(count):
        data = rng.randbytes(rng.randint(low, high))
        write_file(remote / folder / f"{n:03d}.png", data, OLD)
        files[f"{folder}/{n:03d}.png".encode()] = data
    return files


def landed(media: Path) -> dict[bytes, bytes]:
    return {path: data for path, (data, _mtime) in tree_files(media / "forge-a").items()}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def lossy(sshd: SshdServer, tmp_path: Path) -> Iterator[tuple[WanLink, SshdServer]]:
    """The session's sshd behind a 40 ms link of 25 MB/s, each connection capped at 3 MB/s."""
    with WanLink(sshd.port, rtt_s=0.04, rate_bps=25e6, flow_cap_bps=3e6) as link:
        yield link, through(sshd, link, tmp_path / "link_known_hosts")


Synced = tuple[RunOutcome, list[MutableMapping[str, Any]], int]


def sync_once(view: SshdServer, remote: Path, media: Path, state: Path, connections: int) -> Synced:
    """Sync once through `view` with `connections`; return (outcome, logs, connections left
    open after the run)."""
    container = make_container(view, remote, connections=connections)
    manifest = Manifest.open(state)
    transport = SshTransport(container)
    try:
        with capture_logs() as logs:
            outcome = sync_container(context(container, media, manifest, transport))
        return outcome, logs, transport.connections
    finally:
        transport.close()
        manifest.close()


def test_files_spread_over_capped_connections_arrive_byte_identical(
    lossy: tuple[WanLink, SshdServer], tmp_path: Path
) -> None:
    """With `connections: 3`, the run's files are spread over three connections (each one
    carries a share of the bytes through the link) and arrive byte-identical and recorded;
    after the run only the kept-open connection stays open."""
    link, view = lossy
    files = write_media(tmp_path / "remote", 12, 200_000, 900_000, 1)
    outcome, logs, left_open = sync_once(
        view, tmp_path / "remote", tmp_path / "media", tmp_path / "state", 3
    )
    assert outcome.result == "success", outcome.error
    assert landed(tmp_path / "media") == files and outcome.files == 12
    assert [r["connections"] for r in logs if r["event"] == "fetch_connections"] == [3]
    carriers = [s for s in link.stats if s.down.nbytes > MB]
    assert len(carriers) == 3, [s.down.nbytes for s in link.stats]
    assert left_open == 1


def test_a_connection_reset_mid_stream_leaves_its_files_to_the_kept_open_one(
    lossy: tuple[WanLink, SshdServer], tmp_path: Path
) -> None:
    """The extra connection is reset (both ends, as a broken path) while its tar stream is
    under way: the files it had not delivered are fetched again over the kept-open
    connection in the same run; every file lands byte-identical, no temporary file and no
    partial file under a final name is left."""
    link, view = lossy
    files = write_media(tmp_path / "remote", 8, 700_000, 900_000, 2)
    result: list[Synced] = []
    worker = threading.Thread(
        target=lambda: result.append(
            sync_once(view, tmp_path / "remote", tmp_path / "media", tmp_path / "state", 2)
        )
    )
    worker.start()
    wait_for(lambda: len(link.stats) > 1 and link.stats[1].down.nbytes > MB, "extra streaming")
    link.abort(1)
    worker.join(timeout=120)
    outcome, logs, _open = result[0]
    assert outcome.result == "success", outcome.error
    assert landed(tmp_path / "media") == files
    assert [r for r in logs if r["event"] == "tar_fallback"], "the reset stream's files"
    assert temp_files(tmp_path / "media") == []


def test_cancel_while_three_connections_stream_leaves_nothing_partial(
    lossy: tuple[WanLink, SshdServer], tmp_path: Path
) -> None:
    """Cancelling the run while three connections stream: the run ends cancelled, every
    file under a final name is byte-identical, no temporary file is left, the extra
    connections are closed, and the next run lands the rest."""
    link, view = lossy
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    files = write_media(remote, 10, 700_000, 900_000, 6)
    container = make_container(view, remote, connections=3)
    manifest = Manifest.open(state)
    transport = SshTransport(container)
    cancel = threading.Event()
    try:
        ctx = context(container, media, manifest, transport, cancel=cancel)
        outcomes: list[RunOutcome] = []
        worker = threading.Thread(target=lambda: outcomes.append(sync_container(ctx)))
        worker.start()
        wait_for(lambda: sum(s.down.nbytes > MB for s in link.stats) >= 3, "three streaming")
        cancel.set()
        worker.join(timeout=120)
        assert outcomes[0].result == "cancelled", outcomes[0].error
        got = landed(media)
        assert len(got) < len(files) and {p: d for p, d in got.items() if files[p] != d} == {}
        assert temp_files(media) == [] and transport.connections == 1
        cancel.clear()
        assert sync_container(ctx).result == "success" and landed(media) == files
    finally:
        transport.close()
        manifest.close()


def test_sshd_refusing_extra_logins_still_syncs_and_says_so_once(tmp_path: Path) -> None:
    """An sshd with `MaxStartups 2` drops a third login that is still unauthenticated: of
    three extra connections opened at once, one is refused. The run carries on with the
    others (success, every file byte-identical), says so once; the next run asks only for
    as many as were let in, and says nothing."""
    server = SshdServer(tmp_path / "sshd", extra_config=["MaxStartups 2"]).start()
    try:
        with WanLink(server.port, rtt_s=0.06, rate_bps=25e6, flow_cap_bps=4e6) as link:
            view = through(server, link, tmp_path / "link_known_hosts")
            remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
            files = write_media(remote, 8, 500_000, 900_000, 3)
            container = make_container(view, remote, connections=4)
            manifest = Manifest.open(state)
            transport = SshTransport(container)
            try:
                ctx = context(container, media, manifest, transport)
                with capture_logs() as first:
                    outcome = sync_container(ctx)
                assert outcome.result == "success", outcome.error
                assert landed(media) == files
                refused = [r for r in first if r["event"] == "connection_refused"]
                assert len(refused) == 1 and refused[0]["connections"] < 4
                files |= write_media(remote, 8, 500_000, 900_000, 4, "more")
                with capture_logs() as second:
                    again = sync_container(ctx)
                assert again.result == "success", again.error
                assert not [r for r in second if r["event"] == "connection_refused"]
                used = [r["connections"] for r in second if r["event"] == "fetch_connections"]
                assert used in ([], [refused[0]["connections"]])
            finally:
                transport.close()
                manifest.close()
    finally:
        server.stop()


def test_kill_9_of_the_daemon_mid_run_over_several_connections_resumes(
    lossy: tuple[WanLink, SshdServer], tmp_path: Path
) -> None:
    """The real daemon syncs over three capped connections and is killed (-9) while its
    extra connections stream: whatever stands under a final name is byte-identical, and a
    `forge-syncd --once` afterwards lands every file, leaves no temporary file, and the
    manifest records them all."""
    link, view = lossy
    remote = tmp_path / "remote"
    files = write_media(remote, 10, 600_000, 900_000, 5)
    config = write_config(tmp_path, view, remote, connections=3, watch="false")
    media = tmp_path / "media"

    def finals() -> dict[bytes, bytes]:
        got = landed(media) if (media / "forge-a").exists() else {}
        return {p: d for p, d in got.items() if not p.split(b"/")[-1].startswith(b".fs-")}

    daemon = spawn_daemon(config, tmp_path / "stderr")
    try:
        wait_for(
            lambda: sum(s.down.nbytes > MB for s in link.stats) >= 3 and len(finals()) >= 1,
            "three connections streaming and a first file landed",
        )
    finally:
        sigkill(daemon)
    before = finals()
    assert len(before) < len(files), "killed after the run: not mid-run"
    assert {p: d for p, d in before.items() if files.get(p) != d} == {}, "a partial file"
    once = subprocess.run(
        [str(BIN / "forge-syncd"), "--config", str(config), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FORGE_SYNC_CONFIG": ""},
    )
    assert once.returncode == 0, once.stdout + once.stderr
    assert landed(media) == files
    assert temp_files(media) == []
    assert set(manifest_rows(tmp_path / "state", "forge-a")) == set(files)
