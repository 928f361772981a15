"""One JSON pipeline for every log line: ours and the libraries' (APScheduler, paramiko,
warnings), on stderr and in the log file, each field with one JSON type."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from forge_syncd import logs
from forge_syncd.jobs.record import RunOutcome, run_job
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.errors import ConnectError
from tests.support.cli import forge_syncd
from tests.support.sshd import free_port

# A real BackgroundScheduler: a job that raises, and a job still running when its next
# time comes (APScheduler then logs "skipped: maximum number of running instances").
SCHEDULER = """
import sys, time, warnings, logging
from datetime import datetime, timezone
from pathlib import Path
from apscheduler.schedulers.background import BackgroundScheduler
from forge_syncd import logs

logs.configure(sys.argv[1], Path(sys.argv[2]))

def boom():
    raise ValueError("boom from a job")

def slow():
    time.sleep(2.5)

scheduler = BackgroundScheduler()
scheduler.add_job(boom, "date", run_date=datetime.now(timezone.utc))
scheduler.add_job(slow, "interval", seconds=1, max_instances=1, coalesce=True,
                  next_run_time=datetime.now(timezone.utc))
scheduler.start()
time.sleep(3.2)
warnings.warn("a library is deprecated")
logging.getLogger("paramiko.transport").critical("Exception (client): Error reading SSH banner")
scheduler.shutdown(wait=False)
"""


def run_scheduler(level: str, log_file: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Run SCHEDULER at `level`; return the records on stderr and the log file's lines.
    Fail on any stderr line that is not a JSON object with `ts`, `level` and `event`."""
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULER, level, str(log_file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    for record in records:
        assert {"ts", "level", "event"} <= set(record), record
    return records, log_file.read_text().splitlines()


def test_apscheduler_job_exception_keeps_its_traceback_inside_the_json_record(
    tmp_path: Path,
) -> None:
    """APScheduler's "Job ... raised an exception" used to reach stderr as plain text with a
    traceback: now it is one JSON record (on stderr and in the file) with the traceback as a
    string in `exception`; warnings and paramiko's lines are JSON records too."""
    records, file_lines = run_scheduler("info", tmp_path / "log.jsonl")
    assert [json.loads(line) for line in file_lines] == records
    (raised,) = [r for r in records if "raised an exception" in r.get("message", "")]
    assert raised["event"] == "library_log" and raised["level"] == "error"
    assert raised["logger"].startswith("apscheduler")
    assert raised["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: boom from a job" in raised["exception"]
    (warned,) = [r for r in records if r.get("logger") == "py.warnings"]
    assert "a library is deprecated" in warned["message"] and warned["level"] == "warning"
    (banner,) = [r for r in records if r.get("logger") == "paramiko.transport"]
    assert banner["level"] == "critical" and "SSH banner" in banner["message"]


def test_apscheduler_skipped_notice_is_logged_at_debug(tmp_path: Path) -> None:
    """ "Execution of job ... skipped: maximum number of running instances reached" (every
    interval while a run is long) used to be a plain-text warning: it is a debug record,
    so at `info` it is not logged at all."""
    at_info, _ = run_scheduler("info", tmp_path / "info.jsonl")
    assert not [r for r in at_info if "skipped" in r.get("message", "")]
    at_debug, _ = run_scheduler("debug", tmp_path / "debug.jsonl")
    skipped = [r for r in at_debug if "maximum number of running instances" in r.get("message", "")]
    assert skipped, at_debug
    assert {r["level"] for r in skipped} == {"debug"}
    assert {r["event"] for r in skipped} == {"library_log"}


def json_types(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Return, for each field, the JSON types its values have across `records`."""
    names = {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}
    types: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.items():
            kind = "null" if value is None else names.get(type(value), "object")
            types.setdefault(key, set()).add(kind)
    return types


def test_kind_is_a_string_in_sync_failed_as_in_ssh_connect_failed(tmp_path: Path) -> None:
    """`kind` was a string in `ssh_connect_failed` and a list in `sync_failed`: it is a
    string in both; several kinds are joined by "," in sorted order. No field of these
    records has two JSON types."""
    manifest = Manifest.open(tmp_path / "state")

    def unreachable(_log: Any, _run_id: str) -> RunOutcome:
        raise ConnectError("connection refused")

    def two_kinds(_log: Any, _run_id: str) -> RunOutcome:
        return RunOutcome(error="a.png: got 3 bytes", error_kinds={"verify", "transfer"})

    try:
        run_job("sync", "forge-a", manifest, unreachable)
        run_job("sync", "forge-a", manifest, two_kinds)
    finally:
        manifest.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    kinds = [(r["event"], r["kind"]) for r in records if "kind" in r]
    assert kinds == [
        ("ssh_connect_failed", "connect"),
        ("sync_failed", "connect"),
        ("sync_failed", "transfer,verify"),
    ]
    assert {k: t for k, t in json_types(records).items() if len(t) > 1} == {}


def test_once_against_an_unreachable_container_logs_only_json_with_one_type_a_field(
    tmp_path: Path,
) -> None:
    """`forge-syncd --once` against a port where nothing listens: every stderr line and
    every log file line is a JSON record with `ts`, `level`, `event`, and no field has
    two JSON types across them (`kind` is `"connect"` in both failure records)."""
    config = tmp_path / "forge-sync.yaml"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (tmp_path / "known_hosts").write_text("")
    config.write_text(
        f"""\
media_root: {tmp_path}/media
state_dir: {tmp_path}/state
log: {{level: debug, file: {tmp_path}/log/forge-syncd.jsonl}}
control: {{socket: {tmp_path}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{identity_file: {key}, known_hosts: {tmp_path}/known_hosts, connect_timeout: 5s}}
containers:
  - {{name: gone, kind: generic, host: 127.0.0.1, root: /nowhere, ssh: {{port: {free_port()}}}}}
"""
    )
    done = forge_syncd("--once", "--config", str(config))
    assert done.returncode == 1, done.stderr
    stderr = [json.loads(line) for line in done.stderr.splitlines()]
    in_file = [
        json.loads(line)
        for line in (tmp_path / "log" / "forge-syncd.jsonl").read_text().splitlines()
    ]
    for record in stderr + in_file:
        assert {"ts", "level", "event"} <= set(record), record
    assert [(r["event"], r["kind"]) for r in in_file if "kind" in r] == [
        ("ssh_connect_failed", "connect"),
        ("sync_failed", "connect"),
    ]
    assert {k: t for k, t in json_types(stderr + in_file).items() if len(t) > 1} == {}


def test_log_file_reopen_and_a_closed_stderr(tmp_path: Path) -> None:
    """After logrotate moves the file, `reopen()` sends later records to a new file at the
    same path; a closed stderr drops its copy of a record without raising, and the file
    still gets it."""
    path = tmp_path / "forge-syncd.jsonl"
    stderr = io.StringIO()
    logs.configure("info", path, stderr=stderr)
    logs.get_logger().info("before_rotation")
    path.rename(tmp_path / "forge-syncd.jsonl.1")
    logs.reopen()
    stderr.close()
    logs.get_logger().info("after_rotation")
    rotated = (tmp_path / "forge-syncd.jsonl.1").read_text().splitlines()
    assert [json.loads(line)["event"] for line in rotated] == ["before_rotation"]
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
        "after_rotation"
    ]


@pytest.mark.parametrize("text", ["\x7f", "del\x7fin a name", "\x1b[2J\x9b"])
def test_json_lines_carry_no_raw_control_character(tmp_path: Path, text: str) -> None:
    """JSON output escapes ESC and C1 (non-ASCII) and, though JSON allows it raw, DEL: a
    log line shown in a terminal (`tail -f`) cannot drive it; the value reads back intact."""
    path = tmp_path / "raw.jsonl"
    logs.configure("info", path, stderr=io.StringIO())
    logs.get_logger().warning("file_skipped", path=text)
    line = path.read_text()
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in line.rstrip("\n"))
    assert json.loads(line)["path"] == text


UNCAUGHT = """
from forge_syncd import logs
logs.configure("info")
raise RuntimeError("nobody caught this")
"""


def test_an_exception_that_ends_the_main_thread_is_one_json_record() -> None:
    """An uncaught exception used to print a plain-text traceback: stderr holds one
    `uncaught_exception` record (level critical) with the traceback in `exception`."""
    done = subprocess.run(
        [sys.executable, "-c", UNCAUGHT], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    (record,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert record["event"] == "uncaught_exception" and record["level"] == "critical"
    assert record["error"] == "RuntimeError: nobody caught this"
    assert "Traceback (most recent call last):" in record["exception"]
