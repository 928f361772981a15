"""`forge-syncd --once` (and `--once --drain`): the runs, and what they print.

Quiet by default, on a terminal and piped alike: one summary line a run (and what a sync
left on the container, and why), the JSON log to the log file when one is configured, and
only warnings and errors on stderr (those the summary says already, once). `-v` adds a line
for each file copied, adopted, versioned, purged or failed; `-q` prints nothing but errors:
a failed run's summary line, and error records, on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from forge_syncd import logs
from forge_syncd.cli.drainreport import drain_exit_ok, report_lines
from forge_syncd.cli.format import size
from forge_syncd.cli.summary import not_copied_lines, run_line
from forge_syncd.config import Config, ContainerConfig
from forge_syncd.events.dispatcher import Dispatcher
from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.record import RunOutcome, outcome_dict
from forge_syncd.library.manifest import Manifest
from forge_syncd.limits.registry import LIMITS
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.text import printable

EXIT_OK, EXIT_FAILED = 0, 1
QUIET, NORMAL, VERBOSE = -1, 0, 1
# Records the summary lines report (a file too large or dated in the future: "not
# copied"; a failed run and why): in the log file, not said twice on stderr.
SUMMARIZED = frozenset(
    {"file_skipped", "sync_failed", "cleanup_failed", "ssh_connect_failed", "host_key_rejected"}
)
# The records `-v` shows, one line a file: event -> what happened to it.
FILE_EVENTS = {
    "file_synced": "synced",
    "file_adopted": "adopted",
    "file_versioned": "kept an earlier version of",
    "file_purged": "purged",
    "file_failed": "failed",
}


class FileLines(logging.Handler):
    """`-v`: a line on stdout for each file record (FILE_EVENTS)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock_out = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg if isinstance(record.msg, dict) else {}
        what = FILE_EVENTS.get(str(event.get("event")))
        if what is None:
            return
        line = f"{event.get('container', '?')}: {what} {event.get('path', '?')}"
        if isinstance(event.get("bytes"), int):
            line += f" ({size(event['bytes'])})"
        if event.get("error"):
            line += f": {event['error']}"
        with self.lock_out:
            print(printable(line), flush=True)


def configure_output(config: Config, verbosity: int) -> None:
    """Log as the config says to its file; stderr gets warnings and errors (-q: errors)."""
    stderr_level = "error" if verbosity == QUIET else "warning"
    capture = "info" if verbosity == VERBOSE else None
    logs.configure(
        config.log.level,
        config.log.file,
        stderr_level=stderr_level,
        capture_level=capture,
        stderr_skip=SUMMARIZED,
    )
    if verbosity == VERBOSE:
        logging.getLogger().addHandler(FileLines())


def say(verbosity: int, line: str, failed: bool = False) -> None:
    """A summary line: on stdout; with -q only a failure's, on stderr."""
    if verbosity != QUIET:
        print(printable(line), flush=True)
    elif failed:
        print(printable(line), file=sys.stderr, flush=True)


def run_once(config: Config, containers: list[ContainerConfig], verbosity: int = NORMAL) -> int:
    """Sync each container once, in parallel, then clean up those with cleanup enabled
    (never one whose sync failed); print a line per run; return the exit code."""
    manifest = Manifest.open(config.state_dir)
    media_root = os.fsencode(config.media_root)
    LIMITS.configure(config.limits.bwlimit)

    def one(container: ContainerConfig) -> list[tuple[Job, RunOutcome]]:
        runner = ContainerRunner(container, media_root, manifest)
        try:
            done = [(Job.SYNC, runner.run(Job.SYNC, trigger="once"))]
            if container.cleanup.enabled:
                done.append((Job.CLEANUP, runner.run(Job.CLEANUP, trigger="once")))
            return [(job, outcome) for job, outcome in done if outcome is not None]
        finally:
            runner.close()

    dispatcher = Dispatcher(config.ingest, manifest)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(containers)))) as pool:
        results = list(pool.map(one, containers))
    if config.ingest and not dispatcher.drain(timeout_s=60):
        pending = ", ".join(f"{k}: {v}" for k, v in dispatcher.pending().items() if v)
        say(verbosity, f"events not yet delivered ({pending}); the next run delivers them")
    for sink, (files, _failures) in dispatcher.mirror_backlog().items():
        if files:
            say(verbosity, f"mirror {sink}: {files} files still to copy; the next run copies them")
    dispatcher.close()
    manifest.close()
    failed = False
    for container, runs in zip(containers, results, strict=True):
        for job, outcome in runs:
            run: dict[str, Any] = outcome_dict(container.name, job, outcome)
            bad = outcome.result == RunResult.FAILURE
            say(verbosity, run_line(run, ", ".join(sorted(outcome.error_kinds))), bad)
            for line in not_copied_lines(run):
                say(verbosity, line)
            failed = failed or bad
    return EXIT_FAILED if failed else EXIT_OK


def run_drain(config: Config, container: ContainerConfig, purge: bool, as_json: bool) -> int:
    """`--once --drain`: as `forge-syncctl drain`, without a daemon; return the exit code."""
    manifest = Manifest.open(config.state_dir)
    runner = ContainerRunner(container, os.fsencode(config.media_root), manifest)
    dispatcher = Dispatcher(config.ingest, manifest)
    try:
        report = runner.drain(purge)
    finally:
        runner.close()
        if config.ingest:
            dispatcher.drain(timeout_s=60)
        dispatcher.close()
        manifest.close()
    assert report is not None  # a runner of our own is never retired
    result = report.to_json()
    if as_json:
        print(json.dumps(result, indent=2), flush=True)
    else:
        for line in report_lines(result):
            print(printable(line), flush=True)
    sys.stdout.flush()
    return EXIT_OK if drain_exit_ok(result) else EXIT_FAILED
