"""kill -9 of the real daemon at seeded random moments of sync and cleanup, then restart:
nothing is lost, nothing half-written stays, nothing is purged without a byte-identical copy.

FORGE_CRASH_SEED picks the seed (else a fresh one, printed on failure) and FORGE_CRASH_POINTS
the number of kills (default 20). With FORGE_RELIABILITY_DIR set, the numbers are written to
`crash_points.json` there for scripts/reliability.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.paths import display
from tests.support.cli import BIN, write_config
from tests.support.daemon import wait_until
from tests.support.faults import (
    LogTail,
    jsonl_events,
    kill_sshd_hard,
    manifest_events,
    manifest_rows,
    open_jobs,
    sigkill,
    spawn_daemon,
    temp_files,
    version_rows,
    write_reliability,
)
from tests.support.hostile import disabled, write_tool
from tests.support.sshd import SshdServer
from tests.support.trees import (
    HOSTILE_NAMES,
    REAL_MEDIA,
    fake_png,
    tree_files,
    version_files,
    write_file,
)

OLD = 1_700_000_000.0  # far older than older_than: purged once safely copied
PHASES = ("sync", "cleanup", "between")
INCLUDED = (b".png", b".jpg", b".txt", b".json", b".mp4")


@dataclass
class Remote:
    """The container's tree, a pristine copy of the newest file put at each path, every
    byte string ever put there, and those the library must keep for ever (synced, then
    replaced on the container: their only copy is the library's, current or a version)."""

    root: Path
    rng: random.Random
    pristine: dict[bytes, bytes] = field(default_factory=dict)
    young: set[bytes] = field(default_factory=set)
    history: dict[bytes, list[bytes]] = field(default_factory=dict)
    must_keep: set[bytes] = field(default_factory=set)
    writes: int = 0

    def add(self, relative: bytes, data: bytes, young: bool = False) -> None:
        self.writes += 1
        mtime = time.time() - 60 if young else OLD + self.writes
        write_file(os.path.join(os.fsencode(self.root), relative), data, mtime)
        self.pristine[relative] = data
        self.history.setdefault(relative, []).append(data)
        if young:
            self.young.add(relative)

    def replace_synced(self, library: Path) -> None:
        """Give new bytes to one synced file still on the container (changed in place) and
        to one purged name (reused, as ComfyUI does): the earlier bytes, whose copy is in
        the library, must be kept."""
        local = {p: v[0] for p, v in tree_files(library).items()}
        on_remote = self.now().keys()
        synced = [p for p, d in local.items() if self.pristine.get(p) == d and p not in self.young]
        changed = [p for p in synced if p in on_remote and not p.endswith(b".mp4")]
        reused = [p for p in synced if p not in on_remote]
        for group in (changed, reused):
            if group:
                path = self.rng.choice(sorted(group))
                self.must_keep.add(self.pristine[path])
                self.add(path, fake_png(self.rng, self.rng.randrange(1000, 9000)))

    def initial(self) -> None:
        for fixture in sorted(REAL_MEDIA.glob("*.*g")):
            self.add(b"fixtures/" + os.fsencode(fixture.name), fixture.read_bytes())
        for name in HOSTILE_NAMES:
            self.add(b"hostile/" + name, fake_png(self.rng, self.rng.randrange(100, 5000)))
        for i in range(40):
            self.add(b"small/%03d.png" % i, fake_png(self.rng, self.rng.randrange(1000, 20_000)))
        for i in range(3):
            self.add(b"big/%d.mp4" % i, self.rng.randbytes(3_000_000))
        for i in range(3):
            self.add(b"young/%d.png" % i, fake_png(self.rng, 3000), young=True)
        write_file(self.root / "notes.md", b"not media: never synced, never purged", OLD)

    def generate(self, point: int, long: bool) -> None:
        """New output between kills, so later points still find something to sync; `long`:
        a clip big enough (4-6 MiB at the test's 6 MiB/s) that the next sync lasts a second,
        so a kill aimed at it lands inside it."""
        for i in range(6):
            size = self.rng.randrange(1000, 30_000)
            self.add(b"gen%02d/%02d.png" % (point, i), fake_png(self.rng, size))
        mib = self.rng.randrange(4, 7) if long else self.rng.randrange(1, 3)
        self.add(b"gen%02d/clip.mp4" % point, self.rng.randbytes(mib << 20))

    def now(self) -> dict[bytes, bytes]:
        """Return {path: bytes} of the included files on the container right now."""
        return {p: v[0] for p, v in tree_files(self.root).items() if p.endswith(INCLUDED)}


@dataclass
class Tally:
    seed: int
    points: int
    landed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    restarts: int = 0
    partial_final_names: list[bytes] = field(default_factory=list)
    unsafe_deletions: set[bytes] = field(default_factory=set)

    lost_versions: list[bytes] = field(default_factory=list)

    def check_disk(self, remote: Remote, library: Path) -> None:
        """After a kill: every file under its final name (or under .versions/) is whole, a
        byte string the container once had at that path; every file gone from the
        container has a byte-identical local copy; every replaced byte string the library
        had is still in it (current or version)."""
        local = {p: v[0] for p, v in tree_files(library).items()}
        versions = version_files(library)
        every = {data for datas in remote.history.values() for data in datas}
        for path, data in local.items():
            if not path.rsplit(b"/", 1)[-1].startswith(b".fs-") and data not in remote.history.get(
                path, ()
            ):
                self.partial_final_names.append(path)
        self.partial_final_names += [p for p, d in versions.items() if d not in every]
        for path in remote.pristine.keys() - remote.now().keys():
            if local.get(path) != remote.pristine[path]:
                self.unsafe_deletions.add(path)
        kept = set(local.values()) | set(versions.values())
        self.lost_versions += [d[:8] for d in remote.must_keep - kept]


def crash_config(tmp_path: Path, sshd: SshdServer, remote: Path, events: Path) -> Path:
    config = write_config(tmp_path, sshd, remote, interval="1s", bwlimit="6MiB/s")
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:",
            "    cleanup: {enabled: true, older_than: 1h, interval: 1s}\n    ssh: {port:",
        )
        + f"ingest:\n  - {{name: archive, type: jsonl, path: {events}}}\n"
    )
    return config


def wait_for_phase(log: LogTail, phase: str, rng: random.Random, timeout: float = 20) -> None:
    """Wait for the daemon to reach `phase` (by its log), then a random moment more."""
    if phase == "sync":
        marker = rng.choice(["sync_started", "sync_started", "file_synced"])
        delay = rng.uniform(0, 0.5)
    elif phase == "cleanup":
        marker, delay = "cleanup_started", rng.uniform(0, 0.25)
    else:
        marker = rng.choice(["daemon_started", "sync_finished", "cleanup_finished"])
        delay = rng.uniform(0, 0.4)
    wait_until(lambda: marker in log.events(), timeout=timeout, what=f"{marker} in the log")
    time.sleep(delay)


def invariants(
    remote: Remote, library: Path, state: Path, events_path: Path
) -> dict[str, list[Any]]:
    """Check the finished state; return each kind of violation found (empty when sound)."""
    on_remote = remote.now()
    local = {p: v[0] for p, v in tree_files(library).items()}
    rows = manifest_rows(state, "forge-a")
    delivered = jsonl_events(events_path)
    synced_events = {e["path"] for e in delivered if e["type"] == "file_synced"}
    purged_events = {e["path"] for e in delivered if e["type"] == "file_purged"}
    outbox = manifest_events(state)
    found: dict[str, list[Any]] = {
        "lost_files": [p for p in remote.pristine if local.get(p) != remote.pristine[p]],
        "unsafe_deletions": [
            p
            for p in remote.pristine.keys() - on_remote.keys()
            if local.get(p) != remote.pristine[p]
        ],
        "temp_files_left": temp_files(library.parent),
        "local_differs_from_remote": [p for p, d in on_remote.items() if local.get(p) != d],
        "untracked_local_files": sorted(local.keys() - rows.keys()),
        "manifest_disagrees": [],
        "missing_events": [],
        **version_problems(remote, library, state, delivered),
    }
    for path, (size, mtime_ns, state_) in rows.items():
        here = local.get(path)
        ok = here is not None and len(here) == size and path in remote.pristine
        ok = ok and (path in on_remote) == (state_ == "synced")
        ok = ok and os.stat(os.path.join(os.fsencode(library), path)).st_mtime_ns // 10**9 == (
            mtime_ns // 10**9
        )
        if not ok:
            found["manifest_disagrees"].append((path, state_))
    for path in remote.pristine:
        if display(path) not in synced_events:
            found["missing_events"].append(("file_synced", path))
    for path in remote.pristine.keys() - on_remote.keys():
        if display(path) not in purged_events:
            found["missing_events"].append(("file_purged", path))
    undelivered = {i for i, e in outbox.items() if e["type"].startswith("file_")}
    undelivered -= {e["id"] for e in delivered}
    found["missing_events"] += [("undelivered", i) for i in sorted(undelivered)]
    return found


VERSIONED = 1500


def count_versions(library: Path) -> int:
    """Return how many files the library's .versions/ holds (names only, no reads)."""
    return sum(len(files) for _, _, files in os.walk(library / ".versions"))


def version_problems(
    remote: Remote, library: Path, state: Path, delivered: list[dict[str, Any]]
) -> dict[str, list[Any]]:
    """Versions after recovery: every replaced byte string the library had is kept; each
    version on disk has a kept row and a delivered file_versioned event, and no announced
    move is left pending; no version holds the bytes of its path's current file (nothing
    duplicated under a current name)."""
    local = {p: v[0] for p, v in tree_files(library).items()}
    on_disk = version_files(library)
    rows = version_rows(state, "forge-a")
    events = {e["version_path"] for e in delivered if e["type"] == "file_versioned"}
    return {
        "lost_versions": [d[:8] for d in remote.must_keep - set(on_disk.values())],
        "untracked_versions": sorted(
            on_disk.keys() - {v for v, (_, s) in rows.items() if s == "kept"}
        ),
        "pending_versions": sorted(v for v, (_, s) in rows.items() if s != "kept"),
        "versions_without_event": sorted(p for p in on_disk if display(p) not in events),
        "duplicated_current": sorted(
            v for v, (path, _) in rows.items() if on_disk.get(v) == local.get(path)
        ),
    }


SLOW_TOOL = """#!/bin/sh
# A loaded box: each call waits a moment before it runs, so that runs last long enough for a
# kill aimed at one to land inside it (without this, a sync or cleanup of a few files over
# loopback is over before the kill).
sleep 0.3
exec /usr/bin/{tool} "$@"
"""


@pytest.fixture(scope="module")
def slow_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """An sshd whose remote `find` and `xargs` (listing, deletes, checks) are slow."""
    tools = tmp_path_factory.mktemp("slow-tools")
    for tool in ("find", "xargs"):
        write_tool(tools, tool, SLOW_TOOL.format(tool=tool))
    server = SshdServer(tmp_path_factory.mktemp("slow-sshd"), path_dirs=[tools]).start()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill_9_at_random_points_of_sync_and_cleanup_loses_nothing(
    slow_sshd: SshdServer, tmp_path: Path
) -> None:
    """The installed daemon (sync and cleanup every second, a jsonl sink, bwlimit, a
    container whose `find` and `xargs` take 0.3 s to start) is
    SIGKILLed at >= 20 seeded moments in sync, in cleanup and between, and restarted each
    time, while the container keeps generating files. After every kill: no partial file
    under a final name, no remote file gone without a byte-identical local copy. At the
    end: local == remote, every purged file has its local copy and a file_purged event, no
    temporary file left, the manifest agrees with the disk, every file_* event delivered."""
    seed = int(os.environ.get("FORGE_CRASH_SEED") or random.randrange(1 << 32))
    points = int(os.environ.get("FORGE_CRASH_POINTS") or 20)
    rng = random.Random(seed)
    why = f"(FORGE_CRASH_SEED={seed})"
    remote = Remote(tmp_path / "remote", rng)
    remote.initial()
    events_path = tmp_path / "events.jsonl"
    config = crash_config(tmp_path, slow_sshd, remote.root, events_path)
    library, state = tmp_path / "media" / "forge-a", tmp_path / "state"
    log = LogTail(tmp_path / "log" / "forge-syncd.jsonl")
    stderr = tmp_path / "daemon.stderr"
    tally = Tally(seed, points)
    # Every phase gets its share; the order is the seed's.
    plan = [PHASES[i % 3] for i in range(points)]
    rng.shuffle(plan)
    for point, phase in enumerate(plan):
        if point:
            remote.generate(point, long=phase == "sync")
            remote.replace_synced(library)
        log.mark()
        daemon = spawn_daemon(config, stderr)
        tally.restarts += 1
        try:
            wait_for_phase(log, phase, rng)
        finally:
            sigkill(daemon)
        running = open_jobs(log.since_mark())
        tally.landed["cleanup" if "cleanup" in running else "sync" if running else "between"] += 1
        tally.check_disk(remote, library)

    log.mark()
    daemon = spawn_daemon(config, stderr)
    tally.restarts += 1
    try:
        # Its signal handlers are in place once it says so (the SIGTERM below must be one
        # it handles, even when there is nothing left to do).
        wait_until(lambda: "daemon_started" in log.events(), timeout=30, what="daemon_started")
        old = set(remote.pristine) - remote.young

        def settled() -> bool:
            if remote.now().keys() & old:
                return False
            outbox = manifest_events(state)
            wanted = {i for i, e in outbox.items() if e["type"].startswith("file_")}
            return wanted <= {e["id"] for e in jsonl_events(events_path)}

        wait_until(settled, timeout=90, what=f"every old file purged and delivered {why}")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0
    found = invariants(remote, library, state, events_path)
    summary = {
        "seed": seed,
        "points": points,
        "points_in_sync": tally.landed["sync"],
        "points_in_cleanup": tally.landed["cleanup"],
        "points_between": tally.landed["between"],
        "files": len(remote.pristine),
        "purged": len(remote.pristine.keys() - remote.now().keys()),
        "lost_files": len(found["lost_files"]),
        "temp_files_left": len(found["temp_files_left"]),
        "unsafe_deletions": len(found["unsafe_deletions"]) + len(tally.unsafe_deletions),
        "missing_events": len(found["missing_events"]),
        "partial_final_names": len(tally.partial_final_names),
        "manifest_disagrees": len(found["manifest_disagrees"]),
        "versions_kept": len(version_files(library)),
        "lost_versions": len(found["lost_versions"]) + len(tally.lost_versions),
        "restarts": tally.restarts,
    }
    write_reliability("crash_points.json", summary)
    assert not tally.partial_final_names, f"partial files under final names {why}"
    assert not tally.lost_versions, f"a replaced image was lost at a kill {why}"
    assert remote.must_keep, "no file was replaced: versions were not exercised"
    assert not tally.unsafe_deletions, f"purged without a local copy {why}"
    for kind, problems in found.items():
        assert not problems, f"{kind}: {problems[:10]} {why}"
    assert b"Traceback" not in stderr.read_bytes(), why
    assert tally.landed["sync"] >= 3 and tally.landed["cleanup"] >= 3, (tally.landed, why)


SLOW_DELETE_XARGS = """#!/bin/sh
# The real xargs; after a remote delete it keeps the command open, so forge-syncd is still
# waiting for the delete's report when the test kills it.
/usr/bin/xargs "$@"
status=$?
case "$*" in *"rm -f"*) sleep 20 ;; esac
exit $status
"""


@pytest.mark.slow
def test_kill_9_between_the_remote_delete_and_its_record_still_records_the_purge(
    tmp_path: Path,
) -> None:
    """forge-syncd --once is SIGKILLed after the remote delete ran but before the purge was
    recorded (a remote xargs that holds the command open after deleting): the next run
    records the purge in the manifest and emits its file_purged event, instead of leaving
    the row 'synced' for a file the container no longer has and losing the event."""
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "xargs").write_text(SLOW_DELETE_XARGS)
    (tools / "xargs").chmod(0o755)
    disabled(tools, "python3")  # so the sh delete (and its xargs) runs, not python3's
    server = SshdServer(tmp_path / "sshd", path_dirs=[tools]).start()
    try:
        remote = tmp_path / "remote"
        write_file(remote / "old" / "a.png", b"a" * 5000, OLD)
        write_file(remote / "old" / "b.png", b"b" * 7000, OLD)
        events_path = tmp_path / "events.jsonl"
        config = crash_config(tmp_path, server, remote, events_path)
        once = [str(BIN / "forge-syncd"), "--once", "--config", str(config)]
        first = subprocess.Popen(once, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(
                lambda: not (remote / "old").exists() or not any((remote / "old").iterdir()),
                timeout=60,
                what="the remote delete",
            )
            assert first.poll() is None, "the run ended before it could be killed"
        finally:
            sigkill(first)
        state = tmp_path / "state"
        assert {r[2] for r in manifest_rows(state, "forge-a").values()} == {"synced"}
        second = subprocess.run(once, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stdout + second.stderr
        rows = manifest_rows(state, "forge-a")
        assert {p: r[2] for p, r in rows.items()} == {
            b"old/a.png": "purged",
            b"old/b.png": "purged",
        }
        purged = [e for e in manifest_events(state).values() if e["type"] == "file_purged"]
        assert sorted(e["path"] for e in purged) == ["old/a.png", "old/b.png"]
        assert (tmp_path / "media" / "forge-a" / "old" / "a.png").read_bytes() == b"a" * 5000
    finally:
        kill_sshd_hard(server)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_while_versioning_keeps_both_old_and_new_bytes(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """1,500 synced images are all rewritten on the container, so the next sync moves 1,500
    library files into .versions/ (each announced, renamed, fsynced) while it fetches the
    new ones. `forge-syncd --once` is SIGKILLed at 4 seeded moments inside that work
    (each after 1 to 124 more versions exist; the run must still be going) and run again
    each time. At every kill both the old and the new bytes of every path are findable
    under media_root (or the new ones are still only on the container); after the final
    run every path holds its new bytes, its old bytes are in exactly one version, no move
    is left pending, and no version repeats its current file."""
    seed = int(os.environ.get("FORGE_CRASH_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    why = f"(FORGE_CRASH_SEED={seed})"
    remote = tmp_path / "remote"
    names = [b"out/%04d.png" % i for i in range(VERSIONED)]
    old = {name: fake_png(rng, rng.randrange(800, 4000)) for name in names}
    new = {name: fake_png(rng, rng.randrange(800, 4000)) for name in names}
    for name in names:
        write_file(os.path.join(os.fsencode(remote), name), old[name], OLD)
    config = write_config(tmp_path, sshd, remote)
    once = [str(BIN / "forge-syncd"), "--once", "--config", str(config)]
    first = subprocess.run(once, capture_output=True, timeout=120)
    assert first.returncode == 0, first.stderr
    library = tmp_path / "media" / "forge-a"
    for name in names:
        write_file(os.path.join(os.fsencode(remote), name), new[name], OLD + 10)
    for step in [rng.randrange(1, VERSIONED // 12) for _ in range(4)]:
        goal = count_versions(library) + step
        run = subprocess.Popen(once, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while count_versions(library) < goal and run.poll() is None:
                assert time.monotonic() < deadline, f"no {goal} versions in 120 s {why}"
                time.sleep(0.005)
            assert run.poll() is None, f"the run ended before {goal} versions {why}"
        finally:
            sigkill(run)
        local = {p: v[0] for p, v in tree_files(library).items()}
        kept = set(version_files(library).values())
        for name in names:
            assert old[name] in kept or local.get(name) == old[name], (name, goal, why)
            assert local.get(name) in (old[name], new[name], None), (name, goal, why)
    final = subprocess.run(once, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr
    local = {p: v[0] for p, v in tree_files(library).items()}
    assert local == new, why
    versions = version_files(library)
    assert sorted(versions.values()) == sorted(old.values()), why
    rows = version_rows(tmp_path / "state", "forge-a")
    assert {s for _, s in rows.values()} == {"kept"}, why
    assert {v for v in rows} == set(versions), why
    assert not temp_files(tmp_path / "media"), why
