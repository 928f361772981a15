"""Kinds of failure: one enum for the metrics label `forge_sync_errors_total{kind}`, the
`kind` field of log records, `forge-syncctl status` and the control protocol.

Members are strings (`StrEnum`), so they serialise as their value everywhere. A run's
failure has one or more kinds; a single file's outcome has one (`FileKind`).
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Why a run failed."""

    CONNECT = "connect"  # TCP or SSH handshake failed: the container is unreachable
    AUTH = "auth"  # our key was refused
    HOST_KEY = "host_key"  # unknown or changed host key
    ENDPOINT = "endpoint"  # the SSH endpoint offers neither exec nor SFTP (a terminal only)
    REMOTE = "remote"  # a remote command or channel failed
    LISTING = "listing"  # the listing failed or was refused (limits, lies)
    TRANSFER = "transfer"  # a file could not be fetched
    VERIFY = "verify"  # a fetched file did not match (size, sha256)
    DISK_FULL = "disk_full"  # the library's filesystem has no room (bytes or inodes)
    BUSY = "busy"  # another run of the container holds its lock
    LOCAL = "local"  # a local error (permissions, I/O)
    INTERNAL = "internal"  # a defect, or a hostile value a check missed
    SYNC_FAILING = "sync_failing"  # a cleanup held back: the last sync failed


class FileKind(StrEnum):
    """What became of one file that was not synced (a transfer's `Fetched.error_kind`)."""

    TRANSFER = "transfer"  # failed; counts against the run
    VERIFY = "verify"  # fetched bytes did not match; counts against the run
    DISK_FULL = "disk_full"  # no room; counts against the run and stops it
    INTERNAL = "internal"  # a defect; counts against the run
    CHANGED = "changed"  # changed on the remote while read: deferred to the next run
    VANISHED = "vanished"  # gone from the remote since the listing: deferred
    CANCELLED = "cancelled"  # the run was cancelled before it was fetched


# A failed connection attempt: the container shows as `unreachable`.
UNREACHABLE = frozenset({ErrorKind.CONNECT})
# Kinds that say the connection itself failed (container_up is 0).
CONNECTION = frozenset({ErrorKind.CONNECT, ErrorKind.AUTH, ErrorKind.HOST_KEY, ErrorKind.ENDPOINT})
# Per-file outcomes that are not failures of the run.
DEFERRED = frozenset({FileKind.CHANGED, FileKind.VANISHED})
