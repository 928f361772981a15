"""Which folders of a Docker container's fetch come through one archive of the engine's
(`transports/docker/transport.tree_groups`): pure rules, no engine."""

from __future__ import annotations

from forge_syncd.remote.types import FetchItem, Listing, ListingMethod, RemoteFile
from forge_syncd.transports.docker import transport as docker_transport
from forge_syncd.transports.docker import trees

OLD = 1_700_000_000


def test_units_follow_the_plan_share_the_size_bounds_and_the_subfolders() -> None:
    """Pure rules of `tree_groups`: a folder with most bytes planned is one unit; one with
    less than half planned none (its subfolder that is all planned is one); subfolders of many planned files each are units of their
    own (files directly in the folder left to the tar stream); a plan past UNIT_MAX_BYTES is split, never one unit."""

    def listing(paths: dict[bytes, int]) -> Listing:
        files = [RemoteFile(p, size, OLD * 10**9) for p, size in paths.items()]
        return Listing(ListingMethod.FIND, files)

    def items(paths: dict[bytes, int]) -> list[FetchItem]:
        return [FetchItem(RemoteFile(p, s, OLD * 10**9), b"/lib/" + p) for p, s in paths.items()]

    few = {b"d/%03d.png" % n: 1000 for n in range(20)}
    listed = trees.listed_bytes(listing({**few, b"d/huge.bin": 10**9}), (b"",))
    assert trees.tree_groups(items(few), (b"",), listed) == {}
    listed = trees.listed_bytes(listing({**few, b"e/huge.bin": 10**9}), (b"",))
    assert list(trees.tree_groups(items(few), (b"",), listed)) == [b"d"]
    listed = trees.listed_bytes(listing(few), (b"",))
    assert list(trees.tree_groups(items(few), (b"",), listed)) == [b""]
    many = {b"%d/%04d.png" % (n % 3, n): 1000 for n in range(1200)}
    many[b"top.png"] = 1000
    listed = trees.listed_bytes(listing(many), (b"",))
    units = trees.tree_groups(items(many), (b"",), listed)
    assert sorted(units) == [b"0", b"1", b"2"]
    assert all(len(group) == 400 for group in units.values())
    large = {b"%d/%03d.png" % (n % 2, n): 2**25 for n in range(40)}  # 1.25 GiB
    listed = trees.listed_bytes(listing(large), (b"",))
    assert sorted(trees.tree_groups(items(large), (b"",), listed)) == [b"0", b"1"]


def test_the_probe_clock_is_taken_only_with_nanoseconds_and_within_bounds() -> None:
    """GNU date's `%s.%N` gives the archive's read-after clock; busybox's answers (no
    fraction, a literal %N) and hostile ones (a sign, 5,000 digits) give none, so the
    clock is read by an exec of its own instead."""
    clock = docker_transport.probe_clock_ns
    assert clock(b"python3\nnow 1700000000\nclock 1700000000.123456789\n") == (
        1_700_000_000_123_456_789
    )
    assert clock(b"now 1700000000\nclock 1700000000\n") is None
    assert clock(b"clock 1700000000.%N\n") is None
    assert clock(b"clock -1700000000.5\n") is None
    assert clock(b"clock " + b"9" * 5000 + b".1\n") is None
    assert clock(b"now 1700000000\n") is None
