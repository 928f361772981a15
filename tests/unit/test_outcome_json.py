"""What a run reports reaches the control socket and `--once --json` as the same bytes:
each `runs` entry of a sync or cleanup with `wait` (`outcome_dict`), and what the runner
keeps of a run for `status` (`last_copy`, `remote_only`, the pending figures). Pinned
byte for byte, so a change of how runs carry their reports inside the daemon shows here.
Unit tier: a fake container, a real manifest and library."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.config.model import CleanupConfig, ContainerConfig, SyncConfig
from forge_syncd.jobs.record import RunOutcome, outcome_dict
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.types import RemoteFile
from forge_syncd.service.runner import ContainerRunner
from tests.support.fake_remote import FakeRemote


class Box:
    def __init__(self, tmp: Path) -> None:
        self.remote = FakeRemote()
        self.manifest = Manifest.open(tmp / "state")
        config = ContainerConfig(
            name="box",
            kind="generic",
            host="fake",
            root="/out",
            folders=(),
            sync=SyncConfig(watch=False, settle_s=60.0, max_file_size=1000),
            cleanup=CleanupConfig(enabled=True, older_than_s=600.0, preserve=("keep/**",)),
        )
        self.runner = ContainerRunner(
            config, os.fsencode(tmp / "media"), self.manifest, remote=self.remote
        )

    def run(self, job: str, **kw: Any) -> RunOutcome:
        outcome = self.runner.run(job, **kw)
        assert outcome is not None
        return outcome


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    made = Box(tmp_path)
    yield made
    made.manifest.close()


def as_json(job: str, outcome: RunOutcome | None) -> str:
    """The entry as the socket sends it, its run id and duration (which vary) blanked."""
    entry = outcome_dict("box", job, outcome)
    for key in ("run_id", "duration_s"):
        if key in entry:
            entry[key] = key
    return json.dumps(entry)


def test_a_sync_and_a_cleanup_report_the_same_bytes(box: Box) -> None:
    """A full sync that leaves files behind for every reason (settling, too large, ahead of
    the clock, changed while read, refused by the listing), a live sync, a dry-run and a
    real cleanup, and a run of a removed container: their `runs` entries are these bytes;
    the runner's status figures are these numbers."""
    now = int(time.time())
    box.remote.write(b"done.png", b"d" * 100, now - 3600)
    box.remote.write(b"keep/kept.png", b"k" * 10, now - 3600)
    box.remote.write(b"fresh.png", b"f" * 10, now - 5)
    box.remote.write(b"huge.mp4", b"h" * 5000, now - 3600)
    box.remote.write(b"ahead.png", b"a" * 20, now + 10 * 86400)
    box.remote.write(b"busy.png", b"b" * 30, now - 3600)
    box.remote.write(b".versions/x.png", b"x" * 40, now - 3600)
    box.remote.changing.add(b"busy.png")

    sync = box.run("sync", trigger="manual")
    assert as_json("sync", sync) == (
        '{"container": "box", "job": "sync", "run_id": "run_id", "result": "success",'
        ' "files": 2, "bytes": 110, "error": null, "duration_s": "duration_s",'
        ' "trigger": "manual", "not_copied": ['
        '{"reason": "deferred", "files": 1, "bytes": 0},'
        ' {"reason": "mtime_in_future", "files": 1, "bytes": 20},'
        ' {"reason": "refused", "files": 1, "bytes": 40},'
        ' {"reason": "settling", "files": 1, "bytes": 10},'
        ' {"reason": "too_large", "files": 1, "bytes": 5000}]}'
    )
    assert box.runner.results.last_copy is not None
    assert (box.runner.results.last_copy["trigger"], box.runner.results.last_copy["files"]) == (
        "manual",
        2,
    )
    assert box.runner.pending_after == (2, 40)  # busy.png and fresh.png
    summary = box.runner.remote_only.summary()
    assert (summary["files"], summary["bytes"]) == (5, 5100)

    fresh = RemoteFile(b"fresh.png", 10, (now - 5) * 10**9)
    live = box.run("sync", changed=[fresh], trigger="live")
    assert as_json("sync", live) == (
        '{"container": "box", "job": "sync", "run_id": "run_id", "result": "success",'
        ' "files": 1, "bytes": 10, "error": null, "duration_s": "duration_s",'
        ' "trigger": "live", "not_copied": []}'
    )
    assert box.runner.pending_after == (2, 40)  # a live run leaves the full run's figures
    summary = box.runner.remote_only.summary()
    assert (summary["files"], summary["bytes"]) == (4, 5090)

    dry = box.run("cleanup", dry_run=True, trigger="manual")
    decisions = (
        '"decisions": ['
        '{"path": "busy.png", "size": 30, "action": "keep", "reason": "not_synced"},'
        ' {"path": "done.png", "size": 100, "action": "purge", "reason": ""},'
        ' {"path": "huge.mp4", "size": 5000, "action": "keep", "reason": "too_large"},'
        ' {"path": "keep/kept.png", "size": 10, "action": "keep", "reason": "preserved"}],'
        ' "kept": [{"reason": "too_young", "files": 2, "bytes": 30},'
        ' {"reason": "not_synced", "files": 1, "bytes": 30},'
        ' {"reason": "preserved", "files": 1, "bytes": 10},'
        ' {"reason": "too_large", "files": 1, "bytes": 5000}], "older_than_s": 600.0}'
    )
    assert as_json("cleanup", dry) == (
        '{"container": "box", "job": "cleanup", "run_id": "run_id", "result": "success",'
        ' "files": 0, "bytes": 0, "error": null, "duration_s": "duration_s",'
        ' "trigger": "manual", "dry_run": true, ' + decisions
    )
    real = box.run("cleanup")
    assert as_json("cleanup", real) == (
        '{"container": "box", "job": "cleanup", "run_id": "run_id", "result": "success",'
        ' "files": 1, "bytes": 100, "error": null, "duration_s": "duration_s",'
        ' "trigger": "scheduled", "dry_run": false, ' + decisions
    )
    assert as_json("sync", None) == (
        '{"container": "box", "job": "sync", "result": "cancelled", "files": 0, "bytes": 0,'
        ' "error": "container removed"}'
    )
