"""Which folders of a Docker container's fetch come through one archive of the engine's
(`transports/docker/transport.tree_groups`): pure rules, no engine."""

from __future__ import annotations

from forge_syncd.remote.types import FetchItem, Listing, ListingMethod, RemoteFile
from forge_syncd.transports.docker import transport as docker_transport

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
    listed = docker_transport.listed_bytes(listing({**few, b"d/huge.bin": 10**9}), (b"",))
    assert docker_transport.tree_groups(items(few), (b"",), listed) == {}
    listed = docker_transport.listed_bytes(listing({**few, b"e/huge.bin": 10**9}), (b"",))
    assert list(docker_transport.tree_groups(items(few), (b"",), listed)) == [b"d"]
    listed = docker_transport.listed_bytes(listing(few), (b"",))
    assert list(docker_transport.tree_groups(items(few), (b"",), listed)) == [b""]
    many = {b"%d/%04d.png" % (n % 3, n): 1000 for n in range(1200)}
    many[b"top.png"] = 1000
    listed = docker_transport.listed_bytes(listing(many), (b"",))
    units = docker_transport.tree_groups(items(many), (b"",), listed)
    assert sorted(units) == [b"0", b"1", b"2"]
    assert all(len(group) == 400 for group in units.values())
    large = {b"%d/%03d.png" % (n % 2, n): 2**25 for n in range(40)}  # 1.25 GiB
    listed = docker_transport.listed_bytes(listing(large), (b"",))
    assert sorted(docker_transport.tree_groups(items(large), (b"",), listed)) == [b"0", b"1"]
