"""The words a job's life is told in: which job, how it ended, what its container is doing.

`StrEnum`s: each member is its value, so JSON, logs, SQLite, PostgreSQL and metric labels
see the same strings as before they were enums.
"""

from __future__ import annotations

from enum import StrEnum


class Job(StrEnum):
    """A job of one container (also the metrics' `operation` label)."""

    SYNC = "sync"
    CLEANUP = "cleanup"


class RunResult(StrEnum):
    """How a run ended (history, `last_sync`, the metrics' `result` label)."""

    SUCCESS = "success"
    FAILURE = "failure"  # an error, or a file that failed
    CANCELLED = "cancelled"  # stopped before it was done, nothing failed


class ContainerState(StrEnum):
    """SPEC's container state, as status shows it."""

    IDLE = "idle"
    SYNCING = "syncing"
    CLEANING = "cleaning"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"  # the last run could not connect
    ERROR = "error"  # the last run failed otherwise


class WatchState(StrEnum):
    """SPEC's `watch`: what live mode is doing."""

    WATCHING = "watching"  # the remote watcher runs: changes sync within seconds
    POLLING = "polling"  # live mode is on, its watcher is not running: the schedule syncs
    OFF = "off"  # live mode is off
