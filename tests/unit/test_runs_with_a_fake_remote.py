"""Sync and cleanup runs driven through a fake container (the unit tier: no SSH, real
files, a real manifest): what lands, when a fetched file counts as verified, when a
remembered plan is reused, how unrecorded purges are settled, and the runner's states."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge_syncd.cleanup import cleanup_container
from forge_syncd.config.model import CleanupConfig, ContainerConfig, SyncConfig
from forge_syncd.errorkinds import ErrorKind
from forge_syncd.jobs.record import JobContext
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.sync import SyncState, sync_container
from tests.support.fake_remote import FakeRemote
from tests.support.runs import context
from tests.support.trees import tree_files, version_files

OLD = 1_700_000_000
World = tuple[FakeRemote, Manifest, Path]


def container(**sync: object) -> ContainerConfig:
    return ContainerConfig(
        name="box",
        kind="generic",
        host="fake",
        root="/out",
        folders=(),
        sync=SyncConfig(settle_s=0.0, **sync),  # type: ignore[arg-type]
        cleanup=CleanupConfig(enabled=True, older_than_s=1.0),
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    remote = FakeRemote()
    manifest = Manifest.open(tmp_path / "state")
    yield remote, manifest, tmp_path / "media"
    manifest.close()


def ctx_of(world: World, **sync: object) -> JobContext:
    remote, manifest, media = world
    return context(container(**sync), media, manifest, remote)


def test_files_land_byte_identical_with_their_mtime_and_are_recorded(world: World) -> None:
    """A sync through the fake lands every file under its name with the remote mtime,
    records it, and a second run fetches nothing."""
    remote, manifest, media = world
    remote.write(b"a.png", b"alpha", OLD)
    remote.write(b"sub/b.png", b"beta!", OLD + 1)
    ctx = ctx_of(world)
    first = sync_container(ctx)
    assert first.result == "success" and first.files == 2
    got = tree_files(media / "box")
    assert got == {b"a.png": (b"alpha", OLD * 10**9), b"sub/b.png": (b"beta!", (OLD + 1) * 10**9)}
    assert set(manifest.files.records("box")) == {b"a.png", b"sub/b.png"}
    assert sync_container(ctx).files == 0 and remote.fetched == [b"a.png", b"sub/b.png"]


def test_a_short_file_is_not_verified_and_nothing_is_left(world: World) -> None:
    """A file that arrives with fewer bytes than listed fails verification (kind
    `verify`), is not recorded and leaves no temporary file; the others land."""
    remote, manifest, media = world
    remote.write(b"ok.png", b"fine", OLD)
    remote.write(b"short.png", b"truncated", OLD)
    remote.short.add(b"short.png")
    outcome = sync_container(ctx_of(world))
    assert outcome.result == "failure" and outcome.error_kinds == {ErrorKind.VERIFY}
    assert set(manifest.files.records("box")) == {b"ok.png"}
    assert sorted(os.listdir(media / "box")) == ["ok.png"]


def test_a_file_changed_while_read_is_deferred_not_failed(world: World) -> None:
    """A file that changed on the remote while it was read is discarded, the run still
    succeeds, and the next run fetches it."""
    remote, manifest, _ = world
    remote.write(b"busy.png", b"v1", OLD)
    remote.changing.add(b"busy.png")
    ctx = ctx_of(world)
    assert sync_container(ctx).result == "success"
    assert manifest.files.records("box") == {}
    remote.changing.clear()
    assert sync_container(ctx).files == 1


def test_a_remembered_plan_is_reused_only_while_it_holds(world: World) -> None:
    """Same listing bytes, config and manifest: the plan is reused (no parse, no fetch);
    a library copy deleted since, or a new remote file, makes the run plan again."""
    remote, _, media = world
    remote.write(b"a.png", b"alpha", OLD)
    ctx, state = ctx_of(world), SyncState()
    assert sync_container(ctx, state).files == 1
    idle = sync_container(ctx, state)
    assert idle.sync.listing_reused is False  # the first no-change run makes the memo
    assert sync_container(ctx, state).sync.listing_reused is True
    (media / "box" / "a.png").unlink()
    again = sync_container(ctx, state)
    assert again.sync.listing_reused is False and again.files == 1
    remote.write(b"b.png", b"beta", OLD)
    assert sync_container(ctx, state).files == 1


def test_a_reused_name_keeps_the_earlier_image(world: World) -> None:
    """The versions rule without SSH: other bytes under a synced name move the library
    file into .versions/ before the new one lands."""
    remote, _, media = world
    remote.write(b"ComfyUI_00001_.png", b"first", OLD)
    ctx = ctx_of(world)
    sync_container(ctx)
    remote.write(b"ComfyUI_00001_.png", b"second!", OLD + 5)
    assert sync_container(ctx).versions == 1
    assert list(version_files(media / "box").values()) == [b"first"]


def test_unrecorded_purges_are_settled_from_the_next_listing(world: World) -> None:
    """A purge announced and never recorded (a crash between the remote delete and its
    record): gone from the listing → recorded purged with its event; listed with other
    bytes → not ours, the intent is dropped and nothing is purged."""
    remote, manifest, _ = world
    remote.write(b"gone.png", b"g", OLD)
    remote.write(b"changed.png", b"c", OLD)
    ctx = ctx_of(world)
    sync_container(ctx)
    manifest.files.record_purge_intents("box", [(b"gone.png", 1, OLD * 10**9)])
    manifest.files.record_purge_intents("box", [(b"changed.png", 1, OLD * 10**9)])
    del remote.files[b"gone.png"]
    remote.write(b"changed.png", b"cc", OLD + 9)
    outcome = cleanup_container(ctx, dry_run=True)
    assert outcome.files == 1
    assert manifest.files.records("box")[b"gone.png"].state == "purged"
    assert manifest.files.purge_intents("box") == {}
    purged = [e["path"] for e in manifest.outbox.after(0, 1000) if e["type"] == "file_purged"]
    assert purged == ["gone.png"]
    assert b"changed.png" in remote.files


def test_cleanup_purges_only_verified_copies(world: World) -> None:
    """Cleanup through the fake: a synced file with its local copy goes, one whose local
    copy is missing stays, and nothing goes while the last sync failed."""
    remote, _, media = world
    remote.write(b"keep-me.png", b"k", OLD)
    remote.write(b"go.png", b"g", OLD)
    ctx = ctx_of(world)
    sync_container(ctx)
    (media / "box" / "keep-me.png").unlink()
    remote.listing_error = "the box went away"
    assert sync_container(ctx).result == "failure"
    held = cleanup_container(ctx)
    assert held.error_kinds == {ErrorKind.SYNC_FAILING} and "delete" not in remote.calls
    remote.listing_error = None
    remote.fetched.clear()
    remote.files[b"keep-me.png"] = (b"k", OLD * 10**9)
    assert sync_container(ctx).files == 1  # the missing copy is fetched again first
    assert cleanup_container(ctx).files == 2 and remote.files == {}


def test_the_runner_moves_between_states(tmp_path: Path) -> None:
    """ContainerRunner over a fake: a failed listing makes the container `error` and
    counts a failure (backoff); a success makes it `idle` again; a cleanup is refused while
    the sync is failing; the connection is dropped after a failure."""
    fake = FakeRemote()
    fake.write(b"a.png", b"a", OLD)
    manifest = Manifest.open(tmp_path / "state")
    try:
        runner = ContainerRunner(
            container(), os.fsencode(tmp_path / "media"), manifest, remote=fake
        )
        assert runner.state == "idle"
        fake.listing_error = "stalled"
        outcome = runner.run("sync")
        assert outcome is not None and outcome.result == "failure"
        assert runner.state == "error" and runner.failures == 1 and "close" in fake.calls
        cleanup = runner.run("cleanup")
        assert cleanup is not None and ErrorKind.SYNC_FAILING in cleanup.error_kinds
        assert runner.failures == 1  # a skipped cleanup says nothing new
        fake.listing_error = None
        assert runner.run("sync") is not None
        assert runner.state == "idle" and runner.failures == 0
        assert runner.results.last["sync"].files == 1
    finally:
        manifest.close()
