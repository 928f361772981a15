"""One safe-copy rule (`forge_syncd/safety.py`): purge, drain and the at-risk count
(`remote_only` and its gauges) answer "is there a safe library copy of this remote file"
alike, for random listings, manifest rows, library copies and settings. Pure, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.cleanup import drain
from forge_syncd.cleanup.rules import Action, Decision, PurgePolicy, select_purgeable
from forge_syncd.library.manifest import FileRecord
from forge_syncd.library.safety import CopyRules, FoundCopies, at_risk, copy_status
from forge_syncd.mtimes import NS, same_mtime
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile, Skipped
from forge_syncd.sync.plan import SyncPlan, plan_sync
from forge_syncd.transports.shell import delete

NOW = 1_700_000_000 * NS
NAMES = [b"a.png", b"b.png", b"c.jpg", b"d.png", b"e.txt", b"f.png"]
H = "ab" * 32  # every library copy's sha256 here, and the container's
OTHER = "cd" * 32
EQUAL = st.just("equal")  # both ends hash alike


@dataclass
class World:
    """A container's listing, its manifest rows, the library copies and the settings."""

    files: list[RemoteFile]
    refused: list[Skipped]
    records: dict[bytes, FileRecord]
    copies: dict[bytes, tuple[int, int]]
    rules: CopyRules
    policy: PurgePolicy
    hashes: dict[bytes, tuple[str | None, str | None]] = field(default_factory=dict)
    local_sha: dict[bytes, str | None] = field(default_factory=dict)


def _mtime(draw: st.DrawFn) -> int:
    offset = draw(st.sampled_from([-7200, -7200, -60, -3, 0, 20]))  # s from now; 20: future
    return NOW + offset * NS + draw(st.sampled_from([0, 123_456_789]))  # whole s, or ns


@st.composite
def worlds(draw: st.DrawFn, hashes: st.SearchStrategy[str] = EQUAL) -> World:
    """Up to six files (and refused entries); rows synced, forgotten or purged, with the
    listed size and mtime or not, to recheck or not, with a sha256 or not; copies absent,
    of the size or of another; settle, max_file_size (sometimes below synced sizes),
    include/exclude, preserve, older_than, forget and verify."""
    paths = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=6))
    files, refused, records, copies = [], [], {}, {}
    world_hashes: dict[bytes, tuple[str | None, str | None]] = {}
    local_sha: dict[bytes, str | None] = {}
    for path in paths:
        if draw(st.integers(0, 9)) == 0:
            refused.append(Skipped(path, "name the library cannot hold", True, 3, NOW))
            continue
        remote = RemoteFile(path, draw(st.integers(0, 5)), _mtime(draw))
        files.append(remote)
        row = draw(st.sampled_from(["same", "same", "size", "mtime", "second", "none"]))
        if row != "none":
            size = remote.size + (row == "size")
            mtime = remote.mtime_ns + {"same": 0, "size": 0, "mtime": 3 * NS, "second": 7}[row]
            state = draw(st.sampled_from(["synced", "synced", "forgotten", "purged"]))
            sha = draw(st.sampled_from([H, H, None]))
            records[path] = FileRecord(path, size, mtime, sha, state, draw(st.booleans()))
        copy = draw(st.sampled_from(["same", "same", "other", "none"]))
        if copy != "none":
            copies[path] = (remote.size + (copy == "other"), remote.mtime_ns)
        mode = draw(hashes)
        local = None if mode == "copy unreadable" or copy == "none" else H
        there = {"remote differs": OTHER, "vanished": None}.get(mode, H)
        world_hashes[path] = (local, there)
        local_sha[path] = local
    scope = Scope(draw(st.sampled_from([("*",), ("*.png",)])), draw(st.sampled_from([(), ("b*",)])))
    rules = CopyRules(scope, draw(st.sampled_from([0, 10 * NS])), draw(st.sampled_from([2, 10])))
    policy = PurgePolicy(
        draw(st.sampled_from([(), ("a*",)])),
        draw(st.sampled_from([0, 60 * NS])),
        prove=draw(st.booleans()),
        forget=draw(st.booleans()),
    )
    return World(files, refused, records, copies, rules, policy, world_hashes, local_sha)


def drain_judge(world: World) -> tuple[set[bytes], dict[bytes, str]]:
    """Drain's verdict: (verified paths, {unsafe path: reason})."""
    judged = drain.judge(
        world.files,
        world.refused,
        world.records,
        FoundCopies(world.copies),
        world.hashes,
        NOW,
        world.rules,
    )
    return {f.path for f in judged.verified}, dict(judged.unsafe)


def cleanup_select(world: World) -> list[Decision]:
    """Cleanup's decisions."""
    return select_purgeable(
        world.files,
        world.records,
        FoundCopies(world.copies),
        NOW,
        world.rules,
        world.policy,
        lambda path: world.local_sha.get(path),
    )


def sync_plan(world: World) -> SyncPlan:
    """A full sync's plan of the wanted files."""
    wanted = [f for f in world.files if world.rules.scope.wants(f.path)]
    return plan_sync(
        wanted,
        world.records,
        FoundCopies(world.copies),
        None,
        NOW,
        world.rules.settle_ns,
        world.rules.max_size,
        forget=world.policy.forget,
    )


def plan_at_risk(world: World, plan: SyncPlan) -> set[bytes]:
    """What the sync run puts in `remote_only` (sync/run.py `_carry_out`): the plan's
    fetch, adopt and skipped files, and the wanted files the listing refused."""
    refused = {s.path for s in world.refused if world.rules.scope.wants(s.path)}
    return {f.path for f in (*plan.fetch, *plan.adopt, *(r for r, _ in plan.skipped))} | refused


def _listed_as_recorded(world: World, remote: RemoteFile, state: str) -> bool:
    record = world.records.get(remote.path)
    return (
        record is not None
        and record.state == state
        and not record.recheck
        and record.size == remote.size
        and same_mtime(record.mtime_ns, remote.mtime_ns)
    )


def released(world: World) -> set[bytes]:
    """Files the user deleted from the library on purpose, unchanged since: their row is
    forgotten, with the listed size and mtime and no recheck (SPEC: written out apart from
    the rule)."""
    return {f.path for f in world.files if _listed_as_recorded(world, f, "forgotten")}


@settings(max_examples=600)
@given(world=worlds())
def test_purge_drain_and_at_risk_agree(world: World) -> None:
    """Purge, drain and the at-risk count answer "is there a safe library copy" alike:
    cleanup never selects a file drain calls unsafe (released files aside, under forget);
    remote_only holds exactly the wanted files drain lists as unsafe, less those the user
    released and those a sync forgets; and drain never calls a released file unsafe."""
    verified, unsafe = drain_judge(world)
    gone = released(world)
    purged = {d.file.path for d in cleanup_select(world) if d.action == Action.PURGE}
    assert purged <= verified | (gone if world.policy.forget else set())
    plan = sync_plan(world)
    wanted_unsafe = {p for p in unsafe if world.rules.scope.wants(p)}
    assert plan_at_risk(world, plan) == wanted_unsafe - gone - {f.path for f in plan.forget}
    assert not gone & set(unsafe)
    copies = FoundCopies(world.copies)
    by_status = {
        f.path
        for f in world.files
        if world.rules.scope.wants(f.path)
        and at_risk(copy_status(f, world.records.get(f.path), copies, NOW, world.rules))
    }
    refused = plan_at_risk(world, SyncPlan())
    assert plan_at_risk(world, plan) == by_status - {f.path for f in plan.forget} | refused


@settings(max_examples=400)
@given(
    world=worlds(hashes=st.sampled_from(["equal", "remote differs", "copy unreadable", "vanished"]))
)
def test_bytes_that_differ_are_never_verified(world: World) -> None:
    """Drain verifies a file only when both ends hash alike; a purge decision always carries
    the library copy's sha256 (recorded when it landed, or hashed from the copy)."""
    verified, _ = drain_judge(world)
    for path in verified:
        local, there = world.hashes[path]
        assert local is not None and local == there
    for decision in cleanup_select(world):
        if decision.action == Action.PURGE:
            record = world.records[decision.file.path]
            hashed = world.policy.prove or record.sha256 is None
            copy = world.local_sha.get(decision.file.path)
            expected = copy if hashed and record.state != "forgotten" else record.sha256
            assert decision.sha256 is not None and decision.sha256 == expected


def _remote_comparison() -> str:
    """The lines of the container-side delete script (`PYTHON_DELETE`) that compare a
    listed mtime with the file's, as source."""
    lines = delete.PYTHON_DELETE.splitlines()
    start = next(i for i, line in enumerate(lines) if "whole =" in line)
    body = [lines[start], lines[start + 1]]
    assert re.search(r"same = ", body[1]), body
    return "\n".join(line.strip() for line in body)


@settings(max_examples=500)
@given(
    st.integers(-(10**12), 10**12).map(lambda s: s * NS),
    st.integers(0, NS - 1),
    st.integers(-3 * NS, 3 * NS),
    st.booleans(),
)
def test_purge_delete_script_compares_mtimes_as_mtimes_does(
    second: int, nanos: int, shift: int, whole: bool
) -> None:
    """The delete script runs on the container and so keeps its own copy of the mtime
    comparison: for mtimes in ns or whole seconds, before 1970 too, it says "the same"
    exactly when `mtimes.same_mtime` does."""
    listed = second + (0 if whole else nanos)
    found = listed + shift
    scope: dict[str, object] = {"NS": NS, "listed": listed, "found": found}
    exec(_remote_comparison(), scope)  # noqa: S102 - our own script's lines
    assert scope["same"] == same_mtime(found, listed)


def _one_file_world(record: FileRecord, forget: bool) -> World:
    """One old, wanted file with `record` and an intact library copy."""
    remote = RemoteFile(b"a.png", 3, NOW - 7200 * NS)
    return World(
        [remote],
        [],
        {remote.path: record},
        {remote.path: (3, remote.mtime_ns)},
        CopyRules(Scope(("*",), ()), 0, 10),
        PurgePolicy((), 0, forget=forget),
        {remote.path: (H, H)},
        {remote.path: H},
    )


def test_forgotten_files_are_neither_at_risk_nor_unsafe() -> None:
    """Regression (issue 26, §1.1): a file synced, then deleted from the library on purpose
    (`forgotten`), unchanged on the container, was "not synced" to drain (unsafe: the box
    "NOT safe to destroy") while a sync and cleanup count it released. Now drain lists it
    apart, as released; it is neither unsafe nor at risk, and cleanup purges it only with
    `on_local_delete: forget`."""
    for forget in (False, True):
        world = _one_file_world(FileRecord(b"a.png", 3, NOW - 7200 * NS, H, "forgotten"), forget)
        verified, unsafe = drain_judge(world)
        assert (verified, unsafe) == (set(), {})
        assert plan_at_risk(world, sync_plan(world)) == set()
        decisions = cleanup_select(world)
        assert [d.action for d in decisions] == [Action.PURGE if forget else "keep"]
        assert forget or decisions[0].reason == "released"


def test_a_relisted_purged_file_with_its_copy_is_safe() -> None:
    """Regression (issue 26, §1.1): a purged file listed again with the same size and
    mtime, its library copy intact, was "not synced" to drain and cleanup while a sync
    counted it unchanged (not at risk). It is a synced row: drain verifies it, cleanup
    purges it again (against its bytes, hashed at the delete), and it is not at risk."""
    world = _one_file_world(FileRecord(b"a.png", 3, NOW - 7200 * NS, H, "purged"), False)
    verified, unsafe = drain_judge(world)
    assert (verified, unsafe) == ({b"a.png"}, {})
    assert plan_at_risk(world, sync_plan(world)) == set()
    assert [(d.action, d.sha256) for d in cleanup_select(world)] == [(Action.PURGE, H)]
