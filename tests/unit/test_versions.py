"""Versions without SSH: names, moves, recovery, pruning, the forget rule, cleanup's view of
row states, and the manifest and catalog migrations from databases made by round 1."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.cleanup import Action, Decision, decide
from forge_syncd.cleanup.rules import PurgePolicy
from forge_syncd.events.sinks.catalog import CatalogSink
from forge_syncd.library import localfs
from forge_syncd.library.manifest import SCHEMA_VERSION, FileRecord, Manifest, SyncedFile
from forge_syncd.library.prune import Pruner
from forge_syncd.library.safety import CopyRules, FoundCopies
from forge_syncd.library.versions import Versions, stamp, version_path_for
from forge_syncd.paths import MAX_COMPONENT, unsafe_reason
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile
from forge_syncd.sync import FORGET_GUARD_MIN, plan_sync

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NS = 1_000_000_000
T0 = 1_700_000_000 * NS


class Log:
    """Records what a run logs: (event, fields)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.records.append((event, fields))

    warning = info

    def events(self, name: str) -> list[dict[str, Any]]:
        return [fields for event, fields in self.records if event == name]


@pytest.fixture
def library(tmp_path: Path) -> tuple[bytes, Manifest, Log]:
    container_dir = os.fsencode(tmp_path / "media" / "forge-a")
    os.makedirs(container_dir)
    manifest = Manifest.open(tmp_path / "state")
    yield container_dir, manifest, Log()
    manifest.close()


def write(path: bytes, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def read(path: bytes) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# -- names ---------------------------------------------------------------------------------


def test_version_name_keeps_the_folder_and_extension_and_adds_the_utc_stamp() -> None:
    """`a/b/ComfyUI_00001_.png` replaced at 2026-12-01 16:48:42.123456 UTC becomes
    `.versions/a/b/ComfyUI_00001_.20261201T164842.123456Z.png`; a retry adds `-N`."""
    when = stamp(datetime(2026, 12, 1, 16, 48, 42, 123456, tzinfo=UTC))
    assert when == b"20261201T164842.123456Z"
    assert (
        version_path_for(b"a/b/ComfyUI_00001_.png", when)
        == b".versions/a/b/ComfyUI_00001_.20261201T164842.123456Z.png"
    )
    assert version_path_for(b"x.png", when, 2) == b".versions/x.20261201T164842.123456Z-2.png"
    assert version_path_for(b".hidden", when) == b".versions/.hidden.20261201T164842.123456Z"
    assert version_path_for(b"noext", when) == b".versions/noext.20261201T164842.123456Z"


@given(
    st.lists(
        st.binary(min_size=1, max_size=MAX_COMPONENT).filter(
            lambda part: b"/" not in part and b"\0" not in part and part not in (b".", b"..")
        ),
        min_size=1,
        max_size=4,
    ),
    st.integers(min_value=0, max_value=99),
)
def test_any_version_name_is_a_safe_path_under_versions(parts: list[bytes], attempt: int) -> None:
    """Whatever the file's name (any bytes, up to 255 per component), its version path is
    a legal, safe relative path under `.versions/`, in the same folder, and names of
    different retries differ."""
    relative = b"/".join(parts)
    when = stamp(datetime.now(UTC))
    version = version_path_for(relative, when, attempt)
    assert version.startswith(b".versions/")
    assert all(0 < len(part) <= MAX_COMPONENT for part in version.split(b"/"))
    assert version.split(b"/")[1:-1] == parts[:-1]
    assert unsafe_reason(version[len(b".versions/") :]) in (None, unsafe_reason(relative))
    assert version != version_path_for(relative, when, attempt + 1)


def test_a_remote_name_inside_versions_is_refused() -> None:
    """A container cannot place a file among the library's earlier versions."""
    assert unsafe_reason(b".versions/x.png") is not None
    assert unsafe_reason(b".versions") is not None
    assert unsafe_reason(b"sub/.versions/x.png") is None


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    """The rename that places a new file refuses to go over anything already there."""
    a, b = os.fsencode(tmp_path / "a"), os.fsencode(tmp_path / "b")
    write(a, b"new")
    write(b, b"old")
    with pytest.raises(FileExistsError):
        localfs.rename_noreplace(a, b)
    assert read(b) == b"old" and read(a) == b"new"
    os.unlink(b)
    localfs.rename_noreplace(a, b)
    assert read(b) == b"new" and not os.path.exists(a)


# -- moves, recovery, pruning ------------------------------------------------------------


def test_make_way_moves_other_bytes_and_keeps_the_same_bytes(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """A library file with other bytes is moved under .versions (recorded pending until
    finished, then kept); a file with the very same bytes stays where it is."""
    container_dir, manifest, log = library
    versions = Versions(manifest, "forge-a", container_dir, "run1", log)
    target, incoming = container_dir + b"/out/a.png", container_dir + b"/out/.fs-x.part"
    write(target, b"first image")
    manifest.files.record_synced("forge-a", [SyncedFile(b"out/a.png", 11, T0, "aa" * 32)])
    write(incoming, b"first image")
    assert versions.make_way(b"out/a.png", incoming) == []
    write(incoming, b"second image")
    moves = versions.make_way(b"out/a.png", incoming)
    assert len(moves) == 1 and not os.path.exists(target)
    move = moves[0]
    assert move.path == b"out/a.png" and move.sha256 == "aa" * 32 and move.size == 11
    assert read(container_dir + b"/" + move.version_path) == b"first image"
    assert manifest.versions.pending("forge-a") == moves
    versions.finish(moves)
    assert manifest.versions.pending("forge-a") == []
    assert manifest.versions.kept("forge-a") == moves
    assert "out/a.png" not in {r.decode() for r in manifest.files.records("forge-a")}
    assert log.events("file_versioned")[0]["version_path"] == move.version_path.decode()


def test_folder_in_the_way_of_a_file_becomes_versions(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """A folder where a remote file now is: moved whole, one version row per file in it."""
    container_dir, manifest, log = library
    write(container_dir + b"/grid/1.png", b"one")
    write(container_dir + b"/grid/deep/2.png", b"two")
    write(container_dir + b"/.fs-new.part", b"the file")
    moves = Versions(manifest, "forge-a", container_dir, "r", log).make_way(
        b"grid", container_dir + b"/.fs-new.part"
    )
    assert sorted(m.path for m in moves) == [b"grid/1.png", b"grid/deep/2.png"]
    assert not os.path.exists(container_dir + b"/grid")
    for move in moves:
        assert read(container_dir + b"/" + move.version_path) in (b"one", b"two")


def test_file_in_the_way_of_a_folder_becomes_a_version(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """A file where a remote folder now is (a/b/c.png wanted, a/b is a file) is moved."""
    container_dir, manifest, log = library
    write(container_dir + b"/a/b", b"was a file")
    versions = Versions(manifest, "forge-a", container_dir, "r", log)
    moves = versions.make_way_for_folder(container_dir + b"/a/b/c")
    assert [m.path for m in moves] == [b"a/b"]
    assert read(container_dir + b"/" + moves[0].version_path) == b"was a file"
    assert not os.path.exists(container_dir + b"/a/b")


def test_recover_keeps_made_moves_and_drops_unmade_ones(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """After a crash: a move announced and made is recorded kept (with its event) and its
    path's row dropped so the path is fetched or adopted again; a move announced but never
    made is forgotten, and its file is still in place."""
    container_dir, manifest, log = library
    write(container_dir + b"/made.png", b"m")
    write(container_dir + b"/unmade.png", b"u")
    manifest.files.record_synced(
        "forge-a", [SyncedFile(b"made.png", 1, T0, None), SyncedFile(b"unmade.png", 1, T0, None)]
    )
    versions = Versions(manifest, "forge-a", container_dir, "r", log)
    made = versions.make_way(b"made.png", None)  # announced and made, never finished
    unmade = version_path_for(b"unmade.png", stamp(datetime.now(UTC)))
    manifest.versions.record_pending(
        "forge-a", [type(made[0])(b"unmade.png", unmade, 1, T0, None, made[0].versioned_at)]
    )
    assert versions.recover() == 1
    assert manifest.versions.pending("forge-a") == []
    assert manifest.versions.kept("forge-a") == made
    assert set(manifest.files.records("forge-a")) == {b"unmade.png"}
    assert read(container_dir + b"/unmade.png") == b"u"
    events = [e for e in manifest.outbox.after(0) if e["type"] == "file_versioned"]
    assert [e["path"] for e in events] == ["made.png"]


def test_prune_deletes_only_old_versions_never_current_files(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """keep_versions: versions older than the duration are deleted (and their empty
    folders), younger ones stay; `all` (None) prunes nothing; current files are never
    touched."""
    container_dir, manifest, log = library
    versions = Versions(manifest, "forge-a", container_dir, "r", log)
    write(container_dir + b"/d/a.png", b"a1")
    old = versions.make_way(b"d/a.png", None)
    versions.finish(old)
    write(container_dir + b"/d/a.png", b"a2")  # the current file
    later = datetime.now(UTC) + timedelta(days=2)
    assert Pruner(versions).prune(None, later) == 0
    assert Pruner(versions).prune(3 * 86400, later) == 0
    assert Pruner(versions).prune(86400, later) == 1
    assert os.listdir(container_dir + b"/.versions") == []
    assert read(container_dir + b"/d/a.png") == b"a2"
    assert manifest.versions.kept("forge-a") == []
    assert [e["version_path"] for e in log.events("version_pruned")] == [
        old[0].version_path.decode()
    ]


def test_a_version_stamped_after_the_newest_record_is_never_pruned(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """A version stamped by a clock that ran ahead (30 days past the manifest's newest
    record, a run start) is kept by a prune whose clock makes it look old, and a warning
    names the version and the newest record's time; a version stamped within the
    timeline is still pruned by the same call."""
    container_dir, manifest, log = library
    started = datetime.fromisoformat(manifest.runs.start("forge-a", "sync").started_at)
    honest = Versions(manifest, "forge-a", container_dir, "r1", log, clock=lambda: started)
    write(container_dir + b"/old.png", b"o1")
    versions = honest.make_way(b"old.png", None)
    honest.finish(versions)
    ahead = Versions(
        manifest, "forge-a", container_dir, "r2", log, clock=lambda: started + timedelta(days=30)
    )
    write(container_dir + b"/a.png", b"a1")
    jumped = ahead.make_way(b"a.png", None)
    ahead.finish(jumped)
    pruning = Versions(manifest, "forge-a", container_dir, "r3", log)
    assert Pruner(pruning).prune(86400, started + timedelta(days=60)) == 1
    assert [m.version_path for m in manifest.versions.kept("forge-a")] == [jumped[0].version_path]
    assert os.path.exists(container_dir + b"/" + jumped[0].version_path)
    (skipped,) = log.events("version_prune_skipped")
    assert skipped["version_path"] == jumped[0].version_path.decode()
    assert skipped["newest_record"] == manifest.runs.newest_start("forge-a")
    assert skipped["versioned_at"] == jumped[0].versioned_at
    assert [e["version_path"] for e in log.events("version_pruned")] == [
        versions[0].version_path.decode()
    ]


def test_a_clock_behind_the_manifest_does_not_stamp_versions_early(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """A box that boots with its clock a year in the past (before NTP) stamps a version
    with the manifest's newest record instead, and says so (`clock_behind`); once the
    clock is right again, a prune with keep_versions 7d keeps that version."""
    container_dir, manifest, log = library
    started = datetime.fromisoformat(manifest.runs.start("forge-a", "sync").started_at)
    booted = Versions(
        manifest, "forge-a", container_dir, "r1", log, clock=lambda: started - timedelta(days=400)
    )
    write(container_dir + b"/a.png", b"a1")
    moves = booted.make_way(b"a.png", None)
    booted.finish(moves)
    assert moves[0].versioned_at == manifest.runs.newest_start("forge-a")
    assert b"." + stamp(started) + b".png" in moves[0].version_path
    (warning,) = log.events("clock_behind")
    assert warning["newest_record"] == manifest.runs.newest_start("forge-a")
    corrected = Versions(manifest, "forge-a", container_dir, "r2", log)
    assert Pruner(corrected).prune(7 * 86400, started + timedelta(days=1)) == 0
    assert os.path.exists(container_dir + b"/" + moves[0].version_path)


def test_another_containers_later_run_does_not_move_a_stamp(
    library: tuple[bytes, Manifest, Log],
) -> None:
    """Containers run in parallel: a run of another container that started after this
    container's run neither changes this container's version stamps nor warns."""
    container_dir, manifest, log = library
    started = datetime.fromisoformat(manifest.runs.start("forge-a", "sync").started_at)
    manifest.runs.start("forge-b", "sync")
    versions = Versions(manifest, "forge-a", container_dir, "r1", log, clock=lambda: started)
    write(container_dir + b"/a.png", b"a1")
    (move,) = versions.make_way(b"a.png", None)
    assert move.versioned_at == manifest.runs.newest_start("forge-a")
    assert log.events("clock_behind") == []


# -- the forget rule and cleanup ----------------------------------------------------------


def synced_rows(count: int, state: str = "synced") -> dict[bytes, FileRecord]:
    return {b"%d.png" % i: FileRecord(b"%d.png" % i, 10, T0, None, state) for i in range(count)}


def listing(count: int) -> list[RemoteFile]:
    return [RemoteFile(b"%d.png" % i, 10, T0) for i in range(count)]


def test_forget_marks_deleted_copies_and_refetch_fetches_them() -> None:
    """A synced, unchanged file whose library copy the user deleted: fetched again under
    `refetch`, forgotten under `forget`; a forgotten file stays unfetched while unchanged,
    and is fetched again when the remote file changes (a new image under that name)."""
    rows = synced_rows(30)
    here = {b"%d.png" % i: (10, T0) for i in range(1, 30)}
    now = T0 + 3600 * NS
    refetch = plan_sync(listing(30), rows, FoundCopies(here), None, now, 0, 1 << 40)
    assert [f.path for f in refetch.fetch] == [b"0.png"] and not refetch.forget
    forget = plan_sync(listing(30), rows, FoundCopies(here), None, now, 0, 1 << 40, forget=True)
    assert [f.path for f in forget.forget] == [b"0.png"] and not forget.fetch
    rows[b"0.png"] = FileRecord(b"0.png", 10, T0, None, "forgotten")
    again = plan_sync(listing(30), rows, FoundCopies(here), None, now, 0, 1 << 40, forget=True)
    assert again.unchanged == 30 and not again.fetch and not again.forget
    changed = [RemoteFile(b"0.png", 12, T0 + NS), *listing(30)[1:]]
    new = plan_sync(changed, rows, FoundCopies(here), None, now, 0, 1 << 40, forget=True)
    assert [f.path for f in new.fetch] == [b"0.png"]


def test_forget_is_suspended_when_most_of_the_library_is_missing() -> None:
    """An unmounted or wiped library is not a user culling images: when more than half
    (and more than FORGET_GUARD_MIN) of the synced copies are missing at once, they are
    fetched again instead of forgotten (and purgeable)."""
    count = FORGET_GUARD_MIN * 3
    plan = plan_sync(
        listing(count), synced_rows(count), FoundCopies({}), None, T0 + NS, 0, 1 << 40, forget=True
    )
    assert plan.forget == [] and len(plan.fetch) == count and plan.forget_suspended == count


def test_only_current_synced_rows_count_as_copies_for_cleanup() -> None:
    """A purged row counts as a copy only with its library copy there (none here); with
    `forget` a forgotten, unchanged file may be purged (the user deleted it on purpose),
    without `forget` not."""
    remote = RemoteFile(b"a.png", 10, T0)
    now, rules = T0 + 2 * NS, CopyRules(Scope(("*",), ()), 0, 1 << 40)

    def decided(
        remote: RemoteFile, record: FileRecord, here: dict[bytes, tuple[int, int]], forget: bool
    ) -> Decision:
        policy = PurgePolicy((), NS, forget=forget)  # older than a second may go
        return decide(remote, record, FoundCopies(here), now, rules, policy, lambda _p: "h")

    for state, forget, action in [
        ("synced", False, Action.PURGE),
        ("purged", False, "keep"),
        ("purged", True, "keep"),
        ("forgotten", False, "keep"),
        ("forgotten", True, Action.PURGE),
    ]:
        record = FileRecord(b"a.png", 10, T0, "h", state)
        here = {b"a.png": (10, T0)} if state == "synced" else {}
        decision = decided(remote, record, here, forget)
        assert decision.action == action, (state, forget, decision)
    changed = decided(
        RemoteFile(b"a.png", 11, T0), FileRecord(b"a.png", 10, T0, "h", "forgotten"), {}, True
    )
    assert changed.reason == "changed_on_remote"


# -- migrations from round-1 databases ----------------------------------------------------


def test_manifest_made_by_round_1_migrates_with_its_rows(tmp_path: Path) -> None:
    """tests/fixtures/manifest-v3.sqlite was written by the round-1 code (schema 3): it
    opens, keeps every file row, run, event, cursor and purge intent, and accepts the new
    states and version rows."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(FIXTURES / "manifest-v3.sqlite", state / "manifest.sqlite")
    manifest = Manifest.open(state)
    try:
        rows = manifest.files.records("forge-a")
        assert {p: (r.size, r.state) for p, r in rows.items()} == {
            b"txt2img-images/a.png": (10, "synced"),
            b"b\xff.png": (20, "synced"),
            b"old.png": (30, "purged"),
        }
        assert manifest.files.purge_intents("forge-a") == {b"gone.png": (5, 1_600_000_000 * NS)}
        assert [r.result for r in manifest.runs.recent("forge-a")] == ["success"]
        assert manifest.outbox.cursor("archive") == 1
        manifest.files.record_forgotten("forge-a", [b"b\xff.png"])
        assert manifest.files.records("forge-a")[b"b\xff.png"].state == "forgotten"
    finally:
        manifest.close()
    db = sqlite3.connect(state / "manifest.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE files SET state = 'bogus'")
    db.close()


def test_catalog_made_by_round_1_migrates_and_keeps_earlier_versions(tmp_path: Path) -> None:
    """tests/fixtures/catalog-v0.sqlite was written by the round-1 catalog: its rows are
    kept; then a name reused (file_versioned, then file_synced) leaves two rows for the
    path, the earlier one at its .versions/ place; delivering the same events again
    (at-least-once) changes nothing."""
    path = tmp_path / "catalog.sqlite"
    shutil.copy(FIXTURES / "catalog-v0.sqlite", path)
    sink = CatalogSink("catalog", {"path": path})
    old_local = "/srv/forge-media/forge-a/a.png"
    version_local = "/srv/forge-media/forge-a/.versions/a.20261201T000000.000000Z.png"
    versioned = {
        "type": "file_versioned",
        "container": "forge-a",
        "path": "a.png",
        "local_path": version_local,
        "previous_local_path": old_local,
        "size": 10,
        "mtime": "2026-01-01T00:00:00.000000Z",
        "sha256": None,
        "versioned_at": "2026-12-01T00:00:00.000000Z",
    }
    synced = {
        "type": "file_synced",
        "container": "forge-a",
        "path": "a.png",
        "local_path": old_local,
        "size": 99,
        "mtime": "2026-12-01T00:00:00.000000Z",
        "sha256": None,
    }
    for _ in range(2):
        sink.deliver(versioned)
        sink.deliver(synced)
    sink.close()
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT path, local_path, size, versioned_at, purged_at FROM media ORDER BY id"
    ).fetchall()
    assert rows == [
        ("a.png", version_local, 10, "2026-12-01T00:00:00.000000Z", None),
        ("b.png", "/srv/forge-media/forge-a/b.png", 20, None, "2026-01-02T00:00:00.000000Z"),
        ("a.png", old_local, 99, None, None),
    ]


def test_versions_kept_counter_counts_each_runs_versions() -> None:
    """forge_sync_versions_kept_total{container} adds the versions a run kept."""
    from prometheus_client import CollectorRegistry

    from forge_syncd.jobs.record import RunOutcome
    from forge_syncd.service.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.run_finished("comfy-1", "sync", RunOutcome(versions=2))
    metrics.run_finished("comfy-1", "sync", RunOutcome(versions=1))
    metrics.run_finished("comfy-1", "sync", RunOutcome())
    value = registry.get_sample_value("forge_sync_versions_kept_total", {"container": "comfy-1"})
    assert value == 3
