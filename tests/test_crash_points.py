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
    write_reliability,
)
from tests.support.sshd import SshdServer
from tests.support.trees import HOSTILE_NAMES, REAL_MEDIA, fake_png, tree_files, write_file

OLD = 1_700_000_000.0  # far older than older_than: purged once safely copied
PHASES = ("sync", "cleanup", "between")
INCLUDED = (b".png", b".jpg", b".txt", b".json", b".mp4")


@dataclass
class Remote:
    """The container's tree, and a pristine copy of every file ever put there."""

    root: Path
    rng: random.Random
    pristine: dict[bytes, bytes] = field(default_factory=dict)
    young: set[bytes] = field(default_factory=set)

    def add(self, relative: bytes, data: bytes, young: bool = False) -> None:
        mtime = time.time() - 60 if young else OLD + len(self.pristine)
        write_file(os.path.join(os.fsencode(self.root), relative), data, mtime)
        self.pristine[relative] = data
        if young:
            self.young.add(relative)

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

    def check_disk(self, remote: Remote, library: Path) -> None:
        """After a kill: every file under its final name is whole, and every file gone
        from the container has a byte-identical local copy."""
        local = {p: v[0] for p, v in tree_files(library).items()}
        for path, data in local.items():
            if not path.rsplit(b"/", 1)[-1].startswith(b".fs-") and data != remote.pristine.get(
                path
            ):
                self.partial_final_names.append(path)
        for path in remote.pristine.keys() - remote.now().keys():
            if local.get(path) != remote.pristine[path]:
                self.unsafe_deletions.add(path)


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


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill_9_at_random_points_of_sync_and_cleanup_loses_nothing(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """The installed daemon (sync and cleanup every second, a jsonl sink, bwlimit) is
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
    config = crash_config(tmp_path, sshd, remote.root, events_path)
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
        "restarts": tally.restarts,
    }
    write_reliability("crash_points.json", summary)
    assert not tally.partial_final_names, f"partial files under final names {why}"
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
