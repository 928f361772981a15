"""Never lose an image, through a real sshd: every way the container can offer other bytes
under a library path (a name reused after a purge, a file changed in place, a file
replaced by a folder and the reverse, a local file the manifest never knew) keeps the
earlier bytes under `.versions/`, on the tar path and on the SFTP path; `keep_versions` and
`on_local_delete`; and a property test over random container histories."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forge_syncd.cleanup import cleanup_container
from forge_syncd.config.model import CleanupConfig, ContainerConfig
from forge_syncd.events.sinks.catalog import CatalogSink
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.hostile import disabled
from tests.support.runs import context
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, version_files, write_file

OLD = 1_700_000_000


@pytest.fixture(scope="module")
def servers(
    sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SshdServer]]:
    """The session's sshd (files arrive in one tar stream) and one without tar (SFTP)."""
    folder = tmp_path_factory.mktemp("no-tar")
    bare = SshdServer(folder / "sshd", path_dirs=[disabled(folder / "bin", "tar")]).start()
    yield {"tar": sshd, "sftp": bare}
    bare.stop()


class Box:
    """A container reached through a real sshd, its library, manifest and one session."""

    def __init__(self, server: SshdServer, base: Path, **sync: Any) -> None:
        self.remote, self.media, self.state = base / "remote", base / "media", base / "state"
        for folder in (self.remote, self.media, self.state):
            folder.mkdir(parents=True, exist_ok=True)
        container = make_container(server, self.remote, **sync)
        self.container: ContainerConfig = dataclasses.replace(
            container, cleanup=CleanupConfig(enabled=True, older_than_s=1.0)
        )
        self.manifest = Manifest.open(self.state)
        self.link = SshTransport(self.container)
        self.library = self.media / "forge-a"
        self.ctx = context(self.container, self.media, self.manifest, self.link)

    def sync(self) -> RunOutcome:
        outcome = sync_container(self.ctx)
        assert outcome.result == "success", outcome.error
        return outcome

    def cleanup(self) -> RunOutcome:
        outcome = cleanup_container(self.ctx)
        assert outcome.result == "success", outcome.error
        return outcome

    def current(self) -> dict[bytes, bytes]:
        return {path: data for path, (data, _) in tree_files(self.library).items()}

    def versions(self) -> dict[bytes, bytes]:
        return version_files(self.library)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.manifest.outbox.after(0, 100_000) if e["type"] == kind]

    def close(self) -> None:
        self.link.close()
        self.manifest.close()


@pytest.fixture(params=["tar", "sftp"])
def box(
    request: pytest.FixtureRequest, servers: dict[str, SshdServer], tmp_path: Path
) -> Iterator[Box]:
    made = Box(servers[request.param], tmp_path)
    yield made
    made.close()


def logged(tmp_path: Path, event: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == event]


def test_a_name_reused_after_a_purge_keeps_the_first_image(box: Box, tmp_path: Path) -> None:
    """Regression (the round-1 data loss): sync, purge, the container writes a new image
    under the same name (ComfyUI restarts its counter in an emptied folder), sync again.
    The first image — whose only copy was the library file — is kept under .versions/,
    recorded (manifest, file_versioned log record and event, outcome), and the new one is
    the current file; the catalog keeps a row for each."""
    name = b"ComfyUI_00001_.png"
    write_file(box.remote / "ComfyUI_00001_.png", b"first image", OLD)
    box.sync()
    assert box.cleanup().files == 1
    assert not (box.remote / "ComfyUI_00001_.png").exists()
    write_file(box.remote / "ComfyUI_00001_.png", b"second, another image", OLD + 100)
    outcome = box.sync()
    assert outcome.files == 1 and outcome.versions == 1
    assert box.current() == {name: b"second, another image"}
    [(version, data)] = box.versions().items()
    assert data == b"first image"
    assert version.startswith(b".versions/ComfyUI_00001_.") and version.endswith(b"Z.png")
    [kept] = box.manifest.versions.kept("forge-a")
    assert (kept.path, kept.version_path, kept.size) == (name, version, 11)
    [event] = box.events("file_versioned")
    assert event["path"] == "ComfyUI_00001_.png" and event["version_path"] == version.decode()
    assert event["local_path"] == os.fsdecode(box.library / os.fsdecode(version))
    [record] = logged(tmp_path, "file_versioned")
    assert record["path"] == "ComfyUI_00001_.png" and record["version_path"] == version.decode()
    row = box.manifest.files.records("forge-a")[name]
    assert (row.state, row.size) == ("synced", 21)
    catalog = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    for delivered in box.manifest.outbox.after(0, 100_000):
        catalog.deliver(delivered)
    rows = catalog.db.execute(
        "SELECT local_path, size, versioned_at IS NOT NULL, purged_at IS NOT NULL"
        " FROM media ORDER BY id"
    ).fetchall()
    catalog.close()
    assert rows == [
        (os.fsdecode(box.library / os.fsdecode(version)), 11, 1, 1),
        (os.fsdecode(box.library / "ComfyUI_00001_.png"), 21, 0, 0),
    ]


def test_a_file_changed_in_place_keeps_its_earlier_version(box: Box) -> None:
    """A remote file rewritten in place (new bytes, new mtime) replaces the library copy
    only after that copy is a version; a second rewrite makes a second version."""
    write_file(box.remote / "sub" / "grid.png", b"v1", OLD)
    box.sync()
    write_file(box.remote / "sub" / "grid.png", b"v2 longer", OLD + 10)
    box.sync()
    write_file(box.remote / "sub" / "grid.png", b"v3 longest", OLD + 20)
    assert box.sync().versions == 1
    assert box.current() == {b"sub/grid.png": b"v3 longest"}
    assert sorted(box.versions().values()) == [b"v1", b"v2 longer"]
    assert all(v.startswith(b".versions/sub/grid.") for v in box.versions())


def test_a_file_replaced_by_a_folder_becomes_a_version(box: Box) -> None:
    """Regression: a remote file replaced by a folder of the same name failed every later
    sync (`cannot create its folder: File exists`) and blocked cleanup. Now the local file
    becomes a version, the folder is made, its files arrive, and cleanup runs."""
    write_file(box.remote / "batch.png", b"a file first", OLD)
    box.sync()
    (box.remote / "batch.png").unlink()
    write_file(box.remote / "batch.png" / "1.png", b"now a folder's file", OLD + 5)
    outcome = box.sync()
    assert outcome.files == 1 and outcome.versions == 1
    assert box.current() == {b"batch.png/1.png": b"now a folder's file"}
    assert list(box.versions().values()) == [b"a file first"]
    assert set(box.manifest.files.records("forge-a")) == {b"batch.png/1.png"}
    assert box.cleanup().files == 1


def test_a_folder_replaced_by_a_file_keeps_the_folders_files(box: Box) -> None:
    """A remote folder replaced by a file of the same name: each file the library held in
    that folder becomes a version (one row each), then the file takes the name."""
    write_file(box.remote / "set.png" / "a.png", b"a in folder", OLD)
    write_file(box.remote / "set.png" / "deep" / "b.png", b"b in folder", OLD)
    box.sync()
    shutil.rmtree(box.remote / "set.png")
    write_file(box.remote / "set.png", b"a file now", OLD + 5)
    outcome = box.sync()
    assert outcome.versions == 2
    assert box.current() == {b"set.png": b"a file now"}
    assert sorted(box.versions().values()) == [b"a in folder", b"b in folder"]
    assert sorted(m.path for m in box.manifest.versions.kept("forge-a")) == [
        b"set.png/a.png",
        b"set.png/deep/b.png",
    ]
    assert set(box.manifest.files.records("forge-a")) == {b"set.png"}


def test_an_unknown_local_file_in_the_way_is_not_overwritten(box: Box) -> None:
    """A library file the manifest does not know, whose bytes differ from the remote file
    of that name (other size, or same size and mtime but other bytes under sha256), is
    kept as a version; one with the same bytes is adopted as it is."""
    write_file(box.remote / "mine.png", b"remote bytes", OLD)
    write_file(box.library / "mine.png", b"the user's own older file", OLD - 50)
    write_file(box.remote / "same.png", b"identical", OLD)
    write_file(box.library / "same.png", b"identical", OLD)
    outcome = box.sync()
    assert outcome.versions == 1
    assert box.current() == {b"mine.png": b"remote bytes", b"same.png": b"identical"}
    assert list(box.versions().values()) == [b"the user's own older file"]


def test_same_size_and_mtime_but_other_bytes_under_sha256(
    servers: dict[str, SshdServer], tmp_path: Path
) -> None:
    """Under verify: sha256 a local file with the remote's size and mtime but other bytes
    is not adopted: it is fetched, and the local bytes are kept as a version."""
    box = Box(servers["tar"], tmp_path, verify="sha256")
    try:
        write_file(box.remote / "x.png", b"AAAA", OLD)
        write_file(box.library / "x.png", b"BBBB", OLD)
        assert box.sync().versions == 1
        assert box.current() == {b"x.png": b"AAAA"}
        assert list(box.versions().values()) == [b"BBBB"]
    finally:
        box.close()


def test_keep_versions_0_prunes_and_a_duration_keeps(
    servers: dict[str, SshdServer], tmp_path: Path
) -> None:
    """keep_versions: 0 still moves the earlier file aside durably, then prunes it once
    the run ends (logged as version_pruned); 1d keeps it; the current file stays."""
    pruning = Box(servers["tar"], tmp_path / "zero", keep_versions=0.0)
    keeping = Box(servers["tar"], tmp_path / "day", keep_versions=86400.0)
    try:
        for box in (pruning, keeping):
            write_file(box.remote / "a.png", b"one", OLD)
            box.sync()
            write_file(box.remote / "a.png", b"two!", OLD + 1)
            assert box.sync().versions == 1
            assert box.current() == {b"a.png": b"two!"}
        assert pruning.versions() == {} and pruning.manifest.versions.kept("forge-a") == []
        assert list(keeping.versions().values()) == [b"one"]
        assert [e["path"] for e in logged(tmp_path, "version_pruned")] == ["a.png"]
    finally:
        pruning.close()
        keeping.close()


def test_on_local_delete_forget_is_not_refetched_and_may_be_purged(
    servers: dict[str, SshdServer], tmp_path: Path
) -> None:
    """With on_local_delete: forget, a synced image the user deleted from the library is
    not fetched again (its row becomes forgotten, logged) and cleanup purges it from the
    container; with the default (refetch) it comes back and is not purged until it has."""
    forgetting = Box(servers["tar"], tmp_path / "forget", on_local_delete="forget")
    refetching = Box(servers["tar"], tmp_path / "refetch")
    try:
        for box in (forgetting, refetching):
            write_file(box.remote / "bad.png", b"a bad generation", OLD)
            write_file(box.remote / "good.png", b"a good one", OLD)
            box.sync()
            (box.library / "bad.png").unlink()
        assert forgetting.sync().files == 0
        assert forgetting.current() == {b"good.png": b"a good one"}
        assert forgetting.manifest.files.records("forge-a")[b"bad.png"].state == "forgotten"
        assert [r["path"] for r in logged(tmp_path, "file_forgotten")] == ["bad.png"]
        assert forgetting.sync().files == 0  # stays forgotten
        assert forgetting.cleanup().files == 2
        assert list(forgetting.remote.iterdir()) == []
        assert refetching.sync().files == 1
        assert refetching.current()[b"bad.png"] == b"a bad generation"
    finally:
        forgetting.close()
        refetching.close()


# -- property: random container histories -----------------------------------------------

# Names at the top and in nested folders (all matched by the default include): the nested
# `day/night.png` is a file or a folder (holding e.png) in turn, and `folder` turns any name
# into a folder holding in.png, so files and folders take each other's place at any depth.
NAMES = (
    "a.png",
    "b.png",
    "day/c.png",
    "day/d.png",
    "day/night.png",
    "day/night.png/e.png",
    "day/2026/f.png",
    "g.png",
)
CONTENTS = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.sampled_from([b"same bytes", b"other bytes"]),  # equal bytes under several names
)
ACTIONS = st.one_of(
    st.tuples(st.just("file"), st.sampled_from(NAMES), CONTENTS),
    st.tuples(st.just("file"), st.sampled_from(NAMES), CONTENTS),
    st.tuples(st.just("folder"), st.sampled_from(NAMES), CONTENTS),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just(b"")),
    st.tuples(st.just("sync"), st.just(""), st.just(b"")),
    st.tuples(st.just("sync"), st.just(""), st.just(b"")),
    st.tuples(st.just("purge"), st.just(""), st.just(b"")),
)
EXAMPLES = int(os.environ.get("FORGE_VERSION_EXAMPLES") or 40)  # per transport


def clear(path: Path) -> None:
    """Remove whatever is at `path` (a file or a folder with its contents)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def apply(remote: Path, action: str, name: str, data: bytes, clock: list[int]) -> None:
    """Do one container action; every write gets a new, older-than-now mtime. A write
    under a name whose parent is a file replaces that file by a folder."""
    target = remote / name
    if action in ("file", "folder", "delete"):
        clear(target)
    if action in ("file", "folder"):
        for parent in reversed(target.relative_to(remote).parents[:-1]):
            if (remote / parent).is_file():
                clear(remote / parent)
    clock[0] += 2
    if action == "file":
        write_file(target, data, clock[0])
    elif action == "folder":
        write_file(target / "in.png", data, clock[0])


@pytest.mark.parametrize("transport", ["tar", "sftp"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("FORGE_VERSION_EXAMPLES"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(ACTIONS, min_size=10, max_size=30))
def test_random_histories_never_lose_a_synced_byte_string(
    servers: dict[str, SshdServer], transport: str, history: list[tuple[str, str, bytes]]
) -> None:
    """Over random sequences (10 to 30 steps) of container actions on 8 names in nested
    folders (write, rewrite, delete, a file replaced by a folder and back, at any depth,
    equal bytes under several names, purge) and syncs, through the tar stream and through
    SFTP (a container without tar): every byte string that was on the container at a sync
    is still somewhere under the library afterwards, and after each sync every file on the
    container is the library's current file at its path (a file deleted on the container
    stays in the library: a sync never deletes). FORGE_VERSION_EXAMPLES=N runs N random
    histories per transport instead of the fixed ones."""
    base = Path(tempfile.mkdtemp(prefix="versions-prop-"))
    box = Box(servers[transport], base)
    clock = [int(time.time()) - 100_000]
    synced: set[bytes] = set()
    try:
        for action, name, data in [*history, ("sync", "", b"")]:
            if action == "sync":
                outcome = box.sync()
                remote = {p: d for p, (d, _) in tree_files(box.remote).items()}
                if remote:
                    assert (outcome.sync and outcome.sync.transfer) in (None, transport), outcome
                current = box.current()
                assert {p: current.get(p) for p in remote} == remote, history
                synced |= set(remote.values())
            elif action == "purge":
                box.cleanup()
            else:
                apply(box.remote, action, name, data, clock)
            kept = set(box.current().values()) | set(box.versions().values())
            assert synced <= kept, (history, synced - kept)
        versions = len(box.versions())
        event(f"earlier versions kept: {'3+' if versions >= 3 else versions}")
        event(f"synced byte strings: {'5+' if len(synced) >= 5 else len(synced)}")
    finally:
        box.close()
        shutil.rmtree(base)


def test_versions_table_survives_reopen(servers: dict[str, SshdServer], tmp_path: Path) -> None:
    """The version rows are in the manifest on disk (read back with sqlite3)."""
    box = Box(servers["tar"], tmp_path)
    try:
        write_file(box.remote / "a.png", b"1", OLD)
        box.sync()
        write_file(box.remote / "a.png", b"22", OLD + 1)
        box.sync()
    finally:
        box.close()
    db = sqlite3.connect(tmp_path / "state" / "manifest.sqlite")
    rows = db.execute("SELECT path, size, state FROM versions").fetchall()
    db.close()
    assert rows == [(b"a.png", 1, "kept")]
