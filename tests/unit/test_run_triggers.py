"""Every run records what started it (manifest schema 6: `runs.trigger`, `runs.dry_run`);
old manifests migrate and keep working; forge-syncctl's offline reader reads any schema
without changing it; status's `last_copy` is the last sync that copied files; progress
counts files as they land."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from forge_syncd.cli.offline import StateUnreadable, history_runs
from forge_syncd.config.model import CleanupConfig, ContainerConfig, SyncConfig
from forge_syncd.library.manifest import SCHEMA_VERSION, Manifest
from forge_syncd.remote.types import RemoteFile
from forge_syncd.service.runner import ContainerRunner
from tests.support.fake_remote import FakeRemote

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
OLD = 1_700_000_000


def container(**cleanup: object) -> ContainerConfig:
    return ContainerConfig(
        name="box",
        kind="generic",
        host="fake",
        root="/out",
        folders=(),
        sync=SyncConfig(settle_s=0.0),
        cleanup=CleanupConfig(enabled=True, older_than_s=1.0, **cleanup),  # type: ignore[arg-type]
    )


def v3_copy(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(FIXTURES / "manifest-v3.sqlite", state / "manifest.sqlite")
    return state / "manifest.sqlite"


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_a_round_2_manifest_migrates_and_its_runs_have_no_trigger(tmp_path: Path) -> None:
    """The round-1/2 fixture (schema 3) opens: it is migrated to the current schema, its
    runs read back with `trigger` None and `dry_run` False, and new runs record theirs."""
    path = v3_copy(tmp_path)
    (old,) = Manifest(path).runs.recent()
    assert user_version(path) == SCHEMA_VERSION
    assert (old.container, old.job, old.result, old.trigger, old.dry_run) == (
        "forge-a",
        "sync",
        "success",
        None,
        False,
    )
    manifest = Manifest(path)
    run = manifest.runs.start("forge-a", "cleanup", "manual", dry_run=True)
    manifest.runs.finish(run.run_id, "success", 0, 0, None)
    newest = manifest.runs.recent("forge-a", 1)[0]
    assert (newest.trigger, newest.dry_run, newest.result) == ("manual", True, "success")
    assert manifest.runs.last_copy("forge-a") == old  # the dry run copied nothing
    assert manifest.runs.containers() == {"forge-a"}
    manifest.close()


def test_the_offline_reader_reads_an_old_manifest_without_changing_it(tmp_path: Path) -> None:
    """`history` without a daemon reads a schema-3 manifest as it is (no migration, no
    write: its bytes stay the same), triggers unknown."""
    path = v3_copy(tmp_path)
    before = path.read_bytes()
    runs, remark = history_runs(path, None, 20)
    assert remark == ""
    assert [(r["container"], r["job"], r["trigger"], r["dry_run"]) for r in runs] == [
        ("forge-a", "sync", None, False)
    ]
    assert path.read_bytes() == before and user_version(path) == 3
    with pytest.raises(LookupError, match=r"no container 'forge-b' .*did you mean 'forge-a'"):
        history_runs(path, "forge-b", 20)
    with pytest.raises(StateUnreadable, match=r"no .*nothing\.sqlite"):
        history_runs(tmp_path / "nothing.sqlite", None, 20)


def test_the_offline_reader_reads_a_live_wal_manifest_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A current manifest still open by its writer (WAL, its -wal file there) is read,
    newest first, with triggers. Where SQLite refuses a read-only open (a user who may not
    write the -shm: an operator reading the daemon's files) the main file is read as it
    is, and the reader says the newest runs may be missing while a -wal file holds some."""
    manifest = Manifest.open(tmp_path / "state")
    for trigger in ("scheduled", "live", "once"):
        run = manifest.runs.start("box", "sync", trigger)
        manifest.runs.finish(run.run_id, "success", 1, 10, None)
    path = tmp_path / "state" / "manifest.sqlite"
    runs, remark = history_runs(path, "box", 2)
    assert [r["trigger"] for r in runs] == ["once", "live"] and remark == ""
    connect = sqlite3.connect

    def refuse_read_only(database: str, **kwargs: object) -> sqlite3.Connection:
        if database.endswith("?mode=ro"):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return connect(database, **kwargs)  # type: ignore[arg-type]

    other = connect(path)  # what SQLite does now and then: the log into the file
    other.execute("PRAGMA wal_checkpoint(FULL)")
    other.close()
    run = manifest.runs.start("box", "sync", "manual")  # in the -wal file only
    monkeypatch.setattr(sqlite3, "connect", refuse_read_only)
    runs, remark = history_runs(path, "box", 5)
    assert [r["trigger"] for r in runs] == ["once", "live", "scheduled"]
    assert "the newest entries may be missing" in remark
    manifest.close()  # the last connection: checkpointed, the -wal file goes
    runs, remark = history_runs(path, "box", 5)
    assert (len(runs), runs[0]["trigger"], remark) == (4, "manual", "")


def test_runs_record_their_trigger(tmp_path: Path) -> None:
    """Scheduled, live (a watcher's report), manual, once and add (the first sync after
    `forge-syncctl add`) are recorded as such; a dry-run cleanup is marked; `last_copy` is
    the last sync that copied files, not a later no-op one, and survives a new runner."""
    fake = FakeRemote()
    fake.write(b"a.png", b"alpha", OLD)
    manifest = Manifest.open(tmp_path / "state")
    media = os.fsencode(tmp_path / "media")
    runner = ContainerRunner(container(), media, manifest, remote=fake)
    runner.first_trigger = "add"
    assert runner.run("sync") is not None  # the first sync: add's
    fake.write(b"b.png", b"beta", OLD)
    changed = [RemoteFile(b"b.png", 4, OLD * 1_000_000_000)]
    assert runner.run("sync", changed=changed, trigger="live") is not None
    assert runner.run("sync") is not None  # nothing new: scheduled
    assert runner.run("sync", trigger="manual") is not None
    assert runner.run("cleanup", dry_run=True, trigger="manual") is not None
    assert runner.run("sync", trigger="once") is not None
    runs = manifest.runs.recent("box")
    assert [(r.job, r.trigger, r.dry_run, r.files) for r in reversed(runs)] == [
        ("sync", "add", False, 1),
        ("sync", "live", False, 1),
        ("sync", "scheduled", False, 0),
        ("sync", "manual", False, 0),
        ("cleanup", "manual", True, 0),
        ("sync", "once", False, 0),
    ]
    assert runner.results.last_copy is not None
    assert (runner.results.last_copy["trigger"], runner.results.last_copy["files"]) == ("live", 1)
    again = ContainerRunner(container(), media, manifest, remote=fake)
    assert (
        again.results.last_copy is not None and again.results.last_copy["run_id"] == runs[4].run_id
    )
    manifest.close()


def test_progress_counts_a_file_as_it_lands_not_when_its_batch_is_recorded(
    tmp_path: Path,
) -> None:
    """Regression (issue 25, item 3): the file counter sat at 0/N until a batch of files
    was recorded (up to a second, or 256 files, later). A file counts as done once it is in
    place under its name, before its batch's transaction."""
    from forge_syncd.sync import commit

    fake = FakeRemote()
    for index in range(3):
        fake.write(b"f%d.png" % index, b"x" * 10, OLD)
    manifest = Manifest.open(tmp_path / "state")
    runner = ContainerRunner(container(), os.fsencode(tmp_path / "media"), manifest, remote=fake)
    seen: list[int] = []
    record = commit.Committer._commit

    def spy(self: commit.Committer, batch: list[object]) -> None:
        seen.append(runner.progress.files_done)  # before the batch is recorded
        record(self, batch)  # type: ignore[arg-type]

    commit.Committer._commit = spy  # type: ignore[method-assign]
    try:
        outcome = runner.run("sync")
    finally:
        commit.Committer._commit = record  # type: ignore[method-assign]
        manifest.close()
    assert outcome is not None and outcome.files == 3
    assert seen and seen[0] >= 1, seen
    final = runner.progress.finished()
    assert final is not None and (final["files_done"], final["files_total"]) == (3, 3)
    assert final["run_id"] == outcome.run_id


def test_drain_progress_counts_each_files_bytes_once(tmp_path: Path) -> None:
    """Regression (issue 25, item 3): drain's bar counted both sides (`0.0/624.7 MiB` for
    312 MiB of files). Its progress totals the files' bytes once, and ends there; its sync
    and its run are recorded as `drain`'s."""
    fake = FakeRemote()
    sizes = (1000, 2500, 40_000)
    for index, size in enumerate(sizes):
        fake.write(b"f%d.png" % index, b"x" * size, OLD)
    manifest = Manifest.open(tmp_path / "state")
    runner = ContainerRunner(container(), os.fsencode(tmp_path / "media"), manifest, remote=fake)
    report = runner.drain(purge=False)
    assert report is not None and report.safe
    final = runner.progress.finished()
    assert final is not None and final["job"] == "drain"
    assert (final["files_done"], final["files_total"]) == (3, 3)
    assert final["bytes_total"] == final["bytes_done"] == sum(sizes)
    assert [(r.job, r.trigger) for r in manifest.runs.recent("box")] == [("sync", "drain")]
    manifest.close()
