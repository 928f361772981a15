"""Live mode against hostile or wrong watchers, through a real sshd (issue 23, items 3 and
11): an `inotifywait` on the container's PATH that floods the channel with bad records and
headers, and one that watches the whole root whatever folders it is given (python3, which
comes first over SSH, fails there); and the real inotify watcher with `folders` set. A container runner in this process plays the daemon."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import forge_syncd.live.watch
from tests.sshd.test_live_sshd import Live, a1111_write
from tests.support.daemon import read_log, wait_until
from tests.support.hostile import PYTHON, disabled, write_tool
from tests.support.sshd import SshdServer

# Bad records of every kind, written straight into the watcher script's output (its fd 6,
# which every program it starts inherits): a header again, an unknown event, bytes that
# are no record, a failure message with a terminal escape, a refused name.
FLOOD = r"""import os  # forge-hostile-flood
BAD = (
    b"h\0inotifywait\0\0\0\0"
    b"z\0zzz\0\0\0\0"
    b"\x1b[2Jgarbage"
    b"x\0\x1b[31mboom\0\0\0\0"
    b"w\0f\x005\x001700000000\0./../../etc/passwd\0"
)
chunk = BAD * 2000
while True:
    os.write(6, chunk)
"""

# An inotifywait that says its watches are established again and again (each line becomes
# a header record) while the flood runs, until the watcher's process group is killed.
FLOODING_INOTIFYWAIT = f"""#!/bin/sh
( while :; do echo "Watches established."; done ) >&2 &
exec {PYTHON} "$(dirname "$0")/flood.py"
"""

# An inotifywait that watches the whole root, whatever folders it is asked to watch.
TOO_WIDE_INOTIFYWAIT = """#!/bin/sh
exec /usr/bin/inotifywait -m -r -e close_write,moved_to,create --format '%e/%w%f%0' \\
  --no-newline -- .
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SshdServer]]:
    """One sshd whose sessions find the flooding inotifywait first on their PATH, one
    whose sessions find the too-wide one."""
    started = {}
    for name, body in (("flood", FLOODING_INOTIFYWAIT), ("too_wide", TOO_WIDE_INOTIFYWAIT)):
        folder = tmp_path_factory.mktemp(f"sshd-{name}")
        tools = write_tool(folder / "bin", "inotifywait", body)
        (tools / "flood.py").write_text(FLOOD)
        disabled(tools, "python3")  # over SSH python3 comes first (it pushes small files)
        started[name] = SshdServer(folder / "sshd", path_dirs=[tools]).start()
    yield started
    for server in started.values():
        server.stop()


def flood_pids() -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", "forge-hostile-flood|flood.py"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in found.stdout.split()]


def test_a_flooding_watcher_keeps_the_log_small_and_the_runs_few(
    servers: dict[str, SshdServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container whose inotifywait floods the channel with bad records and headers
    (each start, as fast as it can) for about 8 s: every watcher goes over its budget and
    is restarted, ever more slowly; the log stays small (one summary and one
    `watch_stopped` per watcher, it was 7 MB/s) and the full runs stay few (at most one per
    watcher started, it was one per header: 465 in 12 s); a poll still syncs the real
    files; nothing of the flood is left running afterwards."""
    monkeypatch.setattr(forge_syncd.live.watch, "RESTART_DELAYS_S", (0.5, 1.0, 2.0))
    live = Live(servers["flood"], tmp_path, settle_s=0.0)
    try:
        before = os.urandom(5000)
        (live.root / "before.png").write_bytes(before)
        live.runner.start_watch(live._reconcile)
        assert live.runner.live is not None
        watch = live.runner.live
        time.sleep(8.0)  # the flood goes on, at every start
        after = os.urandom(7000)
        a1111_write(live.root / "after.png", after)
        outcome = live.runner.run("sync")  # what the schedule does while polling
        assert outcome is not None and outcome.result == "success"
        assert live.synced("before.png", before) and live.synced("after.png", after)
        started = watch.restarts + 1
        log = tmp_path / "log.jsonl"
        assert log.stat().st_size < 64 * 1024
        assert live.reconciles <= started
        assert live.runs() <= started + 1
        records = read_log(log)
        assert len(records) <= 12 * started + 10
        problems = [r for r in records if r["event"] in ("watch_problems", "watch_problem")]
        assert len(problems) <= 2 * started
        assert watch.restarts >= 2  # each watcher went over its budget, and was restarted
        stopped = [r for r in records if r["event"] == "watch_stopped"]
        assert stopped and all(r["error"].startswith("over budget") for r in stopped)
    finally:
        live.close()
    wait_until(lambda: not flood_pids(), 30, "the flood's processes gone")


def test_a_change_outside_the_folders_is_not_fetched(sshd: SshdServer, tmp_path: Path) -> None:
    """`folders: [txt2img-images]` with the real inotify watcher: a file written in another
    folder under the root, or at the root, is not fetched; one in the folder is."""
    check_folders(sshd, tmp_path, "python3")


def test_a_watcher_watching_too_much_still_fetches_only_the_folders(
    servers: dict[str, SshdServer], tmp_path: Path
) -> None:
    """The same with an inotifywait that watches the whole root (so it reports the other
    folders' files): those reports are counted as records outside the synced folders and
    nothing outside them is fetched."""
    check_folders(servers["too_wide"], tmp_path, "inotifywait")
    problems = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "watch_problems"]
    assert problems and "outside the synced folders" in problems[0]["reasons"]


def check_folders(sshd: SshdServer, tmp_path: Path, backend: str) -> None:
    """Write files outside `txt2img-images` and then one inside; only the inside one may
    reach the library (nothing else: checked once the inside one has landed and the
    watcher had time to report the others, which were written first)."""
    live = Live(sshd, tmp_path, folders=("txt2img-images",))
    try:
        for folder in ("txt2img-images", "extras-images", "txt2img-images-evil"):
            (live.root / folder).mkdir()
        live.start()
        assert live.runner.live is not None and live.runner.live.backend == backend
        wait_until(lambda: "sync" in live.runner.results.last, 30, "the reconciling run")
        a1111_write(live.root / "extras-images" / "out.png", os.urandom(3000))
        a1111_write(live.root / "txt2img-images-evil" / "evil.png", os.urandom(3000))
        a1111_write(live.root / "top.png", os.urandom(3000))
        inside = os.urandom(4000)
        a1111_write(live.root / "txt2img-images" / "in.png", inside)
        wait_until(lambda: live.synced("txt2img-images/in.png", inside), 30, "in.png")
        time.sleep(1.0)
        landed = sorted(
            str(p.relative_to(live.local(""))) for p in live.local("").rglob("*") if p.is_file()
        )
        assert landed == ["txt2img-images/in.png"]
        watched = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "watch_sync"]
        assert all(path == "txt2img-images/in.png" for r in watched for path in r["paths"])
    finally:
        live.close()
