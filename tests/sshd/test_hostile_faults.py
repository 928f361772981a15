"""Hostile values and faults that used to crash, hang or wedge a run, through a real sshd
(fake tools first in the remote PATH, as the hostile suite does): a 400-digit clock, mtimes
past 2262, a file that cannot be finished, a chatty login shell, files from the future, and
"no purge while the last sync failed" across a restart."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.cleanup import cleanup_container
from forge_syncd.jobs.record import RunOutcome, run_job
from forge_syncd.library.manifest import Manifest
from forge_syncd.mtimes import MAX_MTIME_S
from forge_syncd.sync import sync_container
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.cli import forge_syncd, write_config
from tests.support.faults import manifest_rows, temp_files
from tests.support.hostile import disabled, find_record, lying_find, write_tool
from tests.support.runs import context, run_sync
from tests.support.sshd import SshdServer
from tests.support.trees import tree_files, write_file

OLD = 1_700_000_000


def logged(tmp_path: Path, event: str) -> list[dict[str, Any]]:
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def test_a_400_digit_remote_clock_and_mtimes_past_9999_are_refused_per_file(
    tmp_path: Path,
) -> None:
    """Regression: a remote `date` printing a 400-digit number, and listing records with
    mtimes past 2262, raised OverflowError: --once printed a traceback and no summary,
    honest files of the batch were written but not recorded. Now the clock is ignored,
    each file dated past the year 9999 (2262 and later are real dates since round 3) is
    skipped with a warning, honest files are synced and recorded, and --once prints its
    summary line."""
    tools = tmp_path / "tools"
    write_tool(tools, "date", "#!/bin/sh\nprintf '%0400d\\n' 7\n")
    future = str(MAX_MTIME_S + 10**9).encode()
    lying_find(
        tools,
        find_record(b"f", b"5", future + b".5", b"./far-future.png")
        + find_record(b"f", b"5", b"9" * 19 + b".0", b"./nines.png"),
    )
    server = SshdServer(tmp_path / "sshd", path_dirs=[tools]).start()
    try:
        remote = tmp_path / "remote"
        write_file(remote / "honest.png", b"honest bytes", OLD)
        config = write_config(tmp_path, server, remote)
        result = forge_syncd("--once", "--config", str(config))
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "forge-a: sync success, 1 file," in result.stdout
    assert "Traceback" not in result.stderr
    assert set(manifest_rows(tmp_path / "state", "forge-a")) == {b"honest.png"}
    skipped = [
        json.loads(line)
        for line in (tmp_path / "log" / "forge-syncd.jsonl").read_text().splitlines()
        if '"file_skipped"' in line
    ]
    reasons = {r["path"]: (r["level"], r["reason"]) for r in skipped}
    assert reasons["far-future.png"][0] == "warning"
    assert "after 9999" in reasons["far-future.png"][1]
    assert "nines.png" in reasons


def test_an_unexpected_exception_in_a_run_is_a_recorded_internal_failure(
    tmp_path: Path,
) -> None:
    """Any exception a check missed ends that run as a failure of kind `internal` (the
    traceback at debug), recorded in the manifest; it never escapes to the caller."""
    manifest = Manifest.open(tmp_path / "state")

    def body(log: Any, run_id: str) -> RunOutcome:
        raise OverflowError("date value out of range")

    try:
        outcome = run_job("sync", "forge-a", manifest, body)
        assert outcome.result == "failure" and outcome.error_kinds == {"internal"}
        assert "OverflowError" in (outcome.error or "")
        [run] = manifest.runs.recent("forge-a")
        assert run.result == "failure" and "OverflowError" in (run.error or "")
    finally:
        manifest.close()
    [debug] = logged(tmp_path, "internal_error")
    assert "Traceback" in debug["exception"]


@pytest.mark.parametrize("transfer", ["tar", "sftp"])
@pytest.mark.timeout(60)
def test_a_file_that_cannot_be_finished_fails_alone_and_the_run_ends(
    sshd: SshdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transfer: str,
) -> None:
    """Regression: a member whose mtime could not be set killed the thread that finishes
    files; the tar reader then blocked for ever on its queue, cancel did nothing and
    `.part` files stayed. Now that file fails (kind internal), the other files are synced
    and recorded, the run ends, and no temporary file is left."""
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    for i in range(30):
        write_file(remote / f"{i:02d}.png", b"x" * (1000 + i), OLD)
    real_utime = os.utime

    def utime(path: Any, *args: Any, **kwargs: Any) -> None:
        if b"07.png" in os.fsencode(path) or kwargs.get("ns", (0,))[0] == (OLD + 7) * 10**9:
            raise OverflowError("timestamp out of range for platform time_t")
        real_utime(path, *args, **kwargs)

    write_file(remote / "07.png", b"x" * 1007, OLD + 7)
    monkeypatch.setattr(os, "utime", utime)
    container = make_container(sshd, remote, transfers=2)
    if transfer == "sftp":
        bare = SshdServer(tmp_path / "bare", path_dirs=[disabled(tmp_path / "t", "tar")]).start()
        container = make_container(bare, remote, transfers=2)
    try:
        outcome = run_sync(container, media, state)
    finally:
        if transfer == "sftp":
            bare.stop()
    assert outcome.sync.transfer == transfer
    assert outcome.result == "failure" and "internal" in outcome.error_kinds
    assert outcome.files == 29
    assert len(manifest_rows(state, "forge-a")) == 29
    assert not temp_files(media)


def test_a_login_shell_that_prints_does_not_corrupt_listing_or_tar(tmp_path: Path) -> None:
    """Regression: a container `.bashrc` that prints to stdout corrupted the first listing
    record and the tar stream. Remote scripts print a start marker and readers skip what
    precedes it: the tree arrives whole on the tar path, nothing is refused."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("echo 'Welcome to your GPU box!'\nprintf 'no newline'\n")
    (home / ".profile").write_text(". ~/.bashrc\n")
    server = SshdServer(tmp_path / "sshd", home=home).start()
    try:
        remote = tmp_path / "remote"
        for i in range(5):
            write_file(remote / "sub" / f"{i}.png", b"p" * (100 + i), OLD)
        container = make_container(server, remote)
        outcome = run_sync(container, tmp_path / "media", tmp_path / "state")
    finally:
        server.stop()
    assert outcome.result == "success", outcome.error
    assert outcome.sync.listing == "find" and outcome.sync.transfer == "tar"
    assert tree_files(tmp_path / "media" / "forge-a") == tree_files(remote)
    assert not logged(tmp_path, "tar_member_refused") and not logged(tmp_path, "tar_fallback")


def test_a_file_from_the_future_is_synced_once_two_looks_agree(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression: a file whose mtime is ahead of the container's clock was skipped as
    `settling` on every run (a day ahead: for a day). Now the first look warns
    (`mtime_in_future`) and the next look — even from a new process, as with --once —
    syncs it when its size and mtime are unchanged; a file still changing waits."""
    remote, media, state = tmp_path / "remote", tmp_path / "media", tmp_path / "state"
    tomorrow = time.time() + 86400
    write_file(remote / "touched.png", b"from tomorrow", tomorrow)
    write_file(remote / "growing.png", b"a", tomorrow)
    container = make_container(sshd, remote, settle_s=5.0)
    assert run_sync(container, media, state).files == 0
    warned = [r for r in logged(tmp_path, "file_skipped") if r["reason"] == "mtime_in_future"]
    assert {r["path"] for r in warned} == {"touched.png", "growing.png"}
    assert all(r["level"] == "warning" for r in warned)
    write_file(remote / "growing.png", b"ab", tomorrow + 1)
    second = run_sync(container, media, state)
    assert second.files == 1
    assert tree_files(media / "forge-a")[b"touched.png"][0] == b"from tomorrow"
    assert run_sync(container, media, state).files == 1  # growing.png, now unchanged


def test_no_purge_while_the_last_sync_failed_holds_across_a_restart(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression: after a restart, a cleanup asked before the first sync was not held
    back by a failed last sync (the rule read in-memory state). It reads the manifest."""
    remote, media = tmp_path / "remote", tmp_path / "media"
    write_file(remote / "a.png", b"a", OLD)
    container = make_container(sshd, remote)
    run_sync(container, media, tmp_path / "state")
    manifest = Manifest.open(tmp_path / "state")
    run = manifest.runs.start("forge-a", "sync")
    manifest.runs.finish(run.run_id, "failure", 0, 0, "the container went away")
    manifest.close()
    import dataclasses

    from forge_syncd.config.model import CleanupConfig

    container = dataclasses.replace(container, cleanup=CleanupConfig(enabled=True, older_than_s=1))
    manifest = Manifest.open(tmp_path / "state")  # a restarted daemon: nothing in memory
    box = SshTransport(container)
    ctx = context(container, media, manifest, box)
    try:
        held = cleanup_container(ctx)
        assert held.result == "failure" and held.error_kinds == {"sync_failing"}
        assert (remote / "a.png").exists()
        assert sync_container(ctx).result == "success"
        assert cleanup_container(ctx).files == 1
    finally:
        box.close()
        manifest.close()


def test_cancel_ends_a_stalled_tar_stream_run(sshd: SshdServer, tmp_path: Path) -> None:
    """`cancel` ends a run whose tar stream is still flowing (bwlimit keeps it slow)
    within a few seconds, and the cancelled run leaves no temporary file."""
    remote, media = tmp_path / "remote", tmp_path / "media"
    for i in range(4):
        write_file(remote / f"{i}.mp4", os.urandom(2_000_000), OLD)
    container = make_container(sshd, remote, bwlimit=500_000)
    manifest = Manifest.open(tmp_path / "state")
    box = SshTransport(container)
    cancel = threading.Event()
    result: list[RunOutcome] = []
    worker = threading.Thread(
        target=lambda: result.append(
            sync_container(context(container, media, manifest, box, cancel=cancel))
        )
    )
    try:
        worker.start()
        time.sleep(2)
        cancel.set()
        worker.join(timeout=10)
        assert not worker.is_alive(), "cancel did not end the run within 10 s"
    finally:
        cancel.set()
        worker.join(timeout=30)
        box.close()
        manifest.close()
    assert result[0].result == "cancelled"
    assert not temp_files(media)


def test_listing_limits_refuse_a_listing_too_large_to_hold(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """max_listing_files and max_listing_size bound what one listing may make this process
    hold (a hostile container could list hundreds of MB): past either the run fails with
    kind `listing` and a message naming the key; nothing is fetched."""
    remote = tmp_path / "remote"
    for i in range(20):
        write_file(remote / f"{i:02d}.png", b"p", OLD)
    for key, value in (("max_listing_files", 10), ("max_listing_size", 500)):
        container = make_container(sshd, remote, **{key: value})
        outcome = run_sync(container, tmp_path / key, tmp_path / f"state-{key}")
        assert outcome.result == "failure" and outcome.error_kinds == {"listing"}
        assert key in (outcome.error or "")
        assert not (tmp_path / key / "forge-a").exists() or not tree_files(tmp_path / key)


def test_a_library_out_of_inodes_fails_before_writing(sshd: SshdServer, tmp_path: Path) -> None:
    """The free-space check counts inodes beside bytes: 2,000 small files to fetch into a
    filesystem with 1,100 free inodes fail with `disk_full` before anything is written."""
    import subprocess

    mount = tmp_path / "few-inodes"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200m,nr_inodes=1100", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        remote = tmp_path / "remote"
        for i in range(2000):
            write_file(remote / f"{i:04d}.png", b"p", OLD)
        outcome = run_sync(make_container(sshd, remote), mount / "media", tmp_path / "state")
        assert outcome.result == "failure" and outcome.error_kinds == {"disk_full"}
        assert "inodes" in (outcome.error or "")
        assert tree_files(mount / "media") == {}
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
