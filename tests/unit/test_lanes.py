"""Several connections per container (`sync.connections`): how many `auto` opens on which
path, how a run's files are dealt out over the lanes (largest first, so they finish
together), and a run spread over lanes of a fake container landing every file once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.config.model import ContainerConfig, SyncConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.errors import ConnectError, LaneRefused
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, FetchReport, RemoteFile
from forge_syncd.sync import sync_container
from forge_syncd.sync.lanes import deal, fetch_over, spread
from forge_syncd.transports.ssh.lanes import (
    AUTO_BYTES_PER_CONNECTION,
    AUTO_MAX,
    MIN_SHARE,
    connections_for,
    sftp_fetch,
)
from tests.support.fake_remote import FakeRemote
from tests.support.runs import context
from tests.support.trees import tree_files

OLD = 1_700_000_000
MIB = 1024 * 1024


def items(*sizes: int) -> list[FetchItem]:
    return [
        FetchItem(RemoteFile(b"f%d" % n, size, 0), b"/x/f%d" % n) for n, size in enumerate(sizes)
    ]


def test_auto_is_one_connection_on_a_short_path_or_a_small_fetch() -> None:
    """`auto` (0): one connection under 20 ms of round trip (a LAN), with the round trip
    unknown, or for a fetch too small to pay a handshake; on a long path one per
    AUTO_BYTES_PER_CONNECTION up to AUTO_MAX; a set number is used as given, but for at
    least MIN_SHARE bytes a connection; never more connections than files."""
    much = 100 * AUTO_BYTES_PER_CONNECTION
    assert connections_for(0, 0.001, 1000, much) == 1
    assert connections_for(0, None, 1000, much) == 1
    assert connections_for(0, 0.1, 1000, AUTO_BYTES_PER_CONNECTION - 1) == 1
    assert connections_for(0, 0.1, 1000, 2 * AUTO_BYTES_PER_CONNECTION) == 2
    assert connections_for(0, 0.1, 1000, much) == AUTO_MAX
    assert connections_for(6, 0.0, 1000, 6 * MIN_SHARE) == 6
    assert connections_for(6, 0.0, 1000, 2 * MIN_SHARE + 1) == 2
    assert connections_for(6, 0.0, 1000, 10) == 1
    assert connections_for(6, 0.1, 2, much) == 2


def test_files_are_dealt_largest_first_to_the_least_loaded_lane() -> None:
    """Largest first, each to the lane with the fewest bytes so far: 9, 7, 5, 4, 3 MiB over
    two lanes end at 13 and 15 MiB; each lane keeps the listing's order; no lane is empty
    even with more lanes than files."""
    shares = spread(items(9 * MIB, 3 * MIB, 7 * MIB, 5 * MIB, 4 * MIB), 2)
    sizes = [[i.remote.size // MIB for i in share] for share in shares]
    assert sizes == [[9, 4], [3, 7, 5]]
    assert [len(s) for s in spread(items(1, 2), 4)] == [1, 1]
    assert spread([], 3) == []


@given(st.lists(st.integers(0, 10**9), max_size=60), st.integers(1, 8))
def test_every_file_goes_to_exactly_one_lane_and_the_lanes_are_balanced(
    sizes: list[int], lanes: int
) -> None:
    """Whatever the sizes: every item in exactly one share, at most `lanes` shares, none
    empty, and the fullest share exceeds the emptiest by at most the largest file (the
    greedy deal's bound: they finish together)."""
    given_items = items(*sizes)
    shares = spread(given_items, lanes)
    flat = [i.remote.path for share in shares for i in share]
    assert sorted(flat) == sorted(i.remote.path for i in given_items)
    assert len(shares) <= lanes and all(shares)
    if shares:
        loads = [sum(i.remote.size for i in share) for share in shares]
        assert max(loads) - min(loads) <= max(sizes)


def test_a_lane_with_bytes_still_to_fetch_is_dealt_fewer_files() -> None:
    """`deal` counts what each lane has yet to fetch: the transport's lane, 10 bytes still
    to come of its first share, gets none of 4+3+2+1 bytes while a fresh lane takes them
    all; from equal loads they are shared 4+1 and 3+2."""
    sizes = [[i.remote.size for i in share] for share in deal(items(4, 3, 2, 1), [10, 0])]
    assert sizes == [[], [4, 3, 2, 1]]
    sizes = [[i.remote.size for i in share] for share in deal(items(4, 3, 2, 1), [0, 0])]
    assert sizes == [[4, 1], [3, 2]]


class BrokenLane:
    """An extra lane whose connection is refused (`ready` raises) or lost while it
    fetches (`fetch` raises)."""

    def __init__(self, refused: Exception | None = None, lost: Exception | None = None) -> None:
        self.refused = refused
        self.lost = lost

    def ready(self) -> None:
        if self.refused is not None:
            raise self.refused

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        raise self.lost or OSError("lost")


class CountingLane:
    """An extra lane that reports every item as fetched again over its fallback, and
    counts them."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def ready(self) -> None:
        pass

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        self.got += [i.remote.path for i in items]
        return FetchReport(fallback=len(items), fallback_reason="why")


def test_a_lane_that_raises_does_not_stop_the_others_and_its_error_is_raised() -> None:
    """An extra lane raising while it fetches: the transport and the other lane still
    fetch their whole shares, and the error comes out of `fetch_over` once they have ended
    (the run records it; the files it did not hand over are the next run's)."""
    own, good = FakeRemote(), CountingLane()
    with pytest.raises(OSError, match="lane lost"):
        fetch_over(
            own,
            [good, BrokenLane(lost=OSError("lane lost"))],
            items(5, 4, 3, 2),
            FetchCallbacks(lambda f: None),
            threading.Event(),
        )
    assert own.shares == [[b"f0"]] and good.got == [b"f1"]


def test_a_refused_lanes_share_is_fetched_by_the_others_and_said_once() -> None:
    """Two of four extra lanes refused (the server let no more logins in): the files are
    dealt over the transport and the two that opened, every item exactly once; the refusal
    not said before comes back to be logged, the one already said does not."""
    own, first, second = FakeRemote(), CountingLane(), CountingLane()
    extra = [first, BrokenLane(refused=LaneRefused("refused")), second]
    extra.append(BrokenLane(refused=LaneRefused("refused again", said=True)))
    result = fetch_over(
        own, extra, items(8, 7, 6, 5, 4, 3, 2, 1), FetchCallbacks(lambda f: None), threading.Event()
    )
    fetched = [p for share in own.shares for p in share] + first.got + second.got
    assert sorted(fetched) == [b"f%d" % n for n in range(8)]
    assert first.got and second.got
    assert result.lanes == 3 and result.refused == ["refused"]


def test_a_run_spread_over_three_lanes_lands_every_file_once(tmp_path: Path) -> None:
    """A sync through a fake container offering two extra lanes: the files are split into
    at least three fetches (disjoint shares covering all), every file lands byte-identical
    and is recorded once, and the next run fetches nothing."""
    remote = FakeRemote(lanes=3)
    data = {b"d/%02d.png" % n: bytes([n]) * (1000 + 100 * n) for n in range(30)}
    for path, content in data.items():
        remote.write(path, content, OLD)
    manifest = Manifest.open(tmp_path / "state")
    try:
        config = ContainerConfig(
            name="box",
            kind="generic",
            host="fake",
            root="/out",
            folders=(),
            sync=SyncConfig(settle_s=0.0),
        )
        ctx = context(config, tmp_path / "media", manifest, remote)
        outcome = sync_container(ctx)
        assert outcome.result == "success" and outcome.files == 30
        assert len(remote.shares) >= 3 and all(remote.shares)
        assert sorted(p for share in remote.shares for p in share) == sorted(data)
        got = tree_files(tmp_path / "media" / "box")
        assert {path: content for path, (content, _mtime) in got.items()} == data
        assert set(manifest.files.records("box")) == set(data)
        assert sync_container(ctx).files == 0
    finally:
        manifest.close()


class LosingSftp:
    """An SFTP fallback (the interface of `SftpStrategy.fetch`) on a connection that is
    already gone or still alive: every file fails as a transfer error."""

    def __init__(self, alive: bool) -> None:
        self.connection = type("Connection", (), {"alive": alive})()
        self.asked: list[bytes] = []

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> None:
        for item in items:
            self.asked.append(item.remote.path)
            calls.on_fetched(Fetched(item, None, error="gone", error_kind=FileKind.TRANSFER))


def test_a_fallback_whose_connection_is_lost_reconnects_and_a_refusal_is_a_connect_error() -> None:
    """The SFTP fallback found its connection dead (paramiko had not seen it yet when the
    session was asked for): the files are asked for again through a new fallback, which
    reconnects; a refused reconnect raises ConnectError (the container is unreachable), and
    no file is reported as a transfer error meanwhile."""
    dead = LosingSftp(alive=False)
    made: list[object] = []

    def sftp() -> LosingSftp:
        if made:
            raise ConnectError("connection refused")
        made.append(dead)
        return dead

    reported: list[Fetched] = []
    calls = FetchCallbacks(reported.append, lambda n: None)
    with pytest.raises(ConnectError):
        sftp_fetch(sftp, items(3, 2), calls, threading.Event())  # type: ignore[arg-type]
    assert reported == [] and dead.asked == [b"f0", b"f1"]

    # A new connection that works after the lost one: the files are fetched through it.
    again = LosingSftp(alive=True)
    fallbacks = iter([LosingSftp(alive=False), again])
    sftp_fetch(lambda: next(fallbacks), items(3), calls, threading.Event())  # type: ignore[arg-type, return-value]
    assert again.asked == [b"f0"] and len(reported) == 1


def test_a_fallback_on_a_live_connection_reports_its_failures_without_reconnecting() -> None:
    """Files that fail on a connection still alive (a read error of that file) are
    reported as they are: no second fallback is asked for."""
    live = LosingSftp(alive=True)
    fallbacks = iter([live])
    reported: list[Fetched] = []
    calls = FetchCallbacks(reported.append, lambda n: None)
    sftp_fetch(lambda: next(fallbacks), items(3, 2), calls, threading.Event())  # type: ignore[arg-type, return-value]
    assert [f.error_kind for f in reported] == [FileKind.TRANSFER, FileKind.TRANSFER]
