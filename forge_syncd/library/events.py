"""The event records of SPEC ("Events for databases"), built as plain dicts.

Every event has `type`, `ts` and `container`; the outbox adds `id` (increasing, unique per
manifest) when it is read back. Paths are relative to the container's root, shown as UTF-8
with `\\xNN` escapes for other bytes; `local_path` is the absolute local file, shown the
same way. When that local path is not valid UTF-8 (so `local_path` is not the file's real
name), the event also carries `local_path_b64`: the exact bytes, base64 (`exact_local_path`
reads either back).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from forge_syncd.library.manifest import Event, SyncedFile, VersionMove, utc_now
from forge_syncd.paths import display


def _base(kind: str, container: str, run_id: str, **fields: Any) -> Event:
    return {"type": kind, "ts": utc_now(), "container": container, "run_id": run_id, **fields}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_from_ns(mtime_ns: int) -> str:
    """Return an mtime as ISO 8601 UTC with microseconds, exactly (integer arithmetic: a
    float of nanoseconds loses them), for any date of the years 1 to 9999."""
    moment = EPOCH + timedelta(microseconds=mtime_ns // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def local_path_fields(local: bytes) -> dict[str, str]:
    """Given a local file's path, return the event fields that name it: `local_path`
    (UTF-8, `\\xNN` escapes) and, if that is not the exact path, `local_path_b64`."""
    fields = {"local_path": display(local)}
    try:
        local.decode("utf-8")
    except UnicodeDecodeError:
        fields["local_path_b64"] = base64.b64encode(local).decode("ascii")
    return fields


def exact_local_path(event: Event) -> bytes:
    """Given an event with a local file, return that file's exact path: `local_path_b64`
    when the event has a readable one, else `local_path` (exact for any UTF-8 path)."""
    encoded = event.get("local_path_b64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            pass
    return os.fsencode(str(event["local_path"]))


def file_synced(
    container: str, run_id: str, container_dir: bytes, synced: SyncedFile, adopted: bool = False
) -> Event:
    event = _base(
        "file_synced",
        container,
        run_id,
        path=display(synced.path),
        **local_path_fields(os.path.join(container_dir, synced.path)),
        size=synced.size,
        mtime=iso_from_ns(synced.mtime_ns),
        sha256=synced.sha256,
    )
    if adopted:
        event["adopted"] = True
    return event


def _version_event(
    kind: str, container: str, run_id: str, container_dir: bytes, move: VersionMove, **fields: Any
) -> Event:
    """An event about a version: `path` (where its file was, relative to the container's
    root), `version_path` (its place relative to the container's folder) and `local_path`
    (that place in the library), then `fields`."""
    return _base(
        kind,
        container,
        run_id,
        path=display(move.path),
        version_path=display(move.version_path),
        **local_path_fields(os.path.join(container_dir, move.version_path)),
        **fields,
    )


def file_versioned(container: str, run_id: str, container_dir: bytes, move: VersionMove) -> Event:
    """An earlier library file moved under `.versions/`: `path` is where it was (relative
    to the container's root), `local_path` where it is now, `previous_local_path` where it
    was in the library, `version_path` its place relative to the container's folder."""
    return _version_event(
        "file_versioned",
        container,
        run_id,
        container_dir,
        move,
        previous_local_path=display(os.path.join(container_dir, move.path)),
        size=move.size,
        mtime=iso_from_ns(move.mtime_ns),
        sha256=move.sha256,
        versioned_at=move.versioned_at,
    )


def version_pruned(container: str, run_id: str, container_dir: bytes, move: VersionMove) -> Event:
    """A version deleted under `keep_versions`: `path` is where its file once was (relative
    to the container's root), `version_path` and `local_path` where it was kept until now.
    Catalogs drop its row: the file exists nowhere any more."""
    return _version_event("version_pruned", container, run_id, container_dir, move, size=move.size)


def batch_synced(container: str, run_id: str, files: list[SyncedFile]) -> Event:
    return _base(
        "batch_synced", container, run_id, files=len(files), bytes=sum(f.size for f in files)
    )


def file_purged(container: str, run_id: str, path: bytes, size: int) -> Event:
    return _base(
        "file_purged", container, run_id, path=display(path), size=size, purged_at=utc_now()
    )


def run_complete(
    job: str,
    container: str,
    run_id: str,
    result: str,
    files: int,
    nbytes: int,
    duration_s: float,
    error: str | None,
) -> Event:
    """`sync_complete` or `cleanup_complete`: the summary of one run."""
    return _base(
        f"{job}_complete",
        container,
        run_id,
        result=result,
        files=files,
        bytes=nbytes,
        duration_s=duration_s,
        error=error,
    )


def drain_complete(report: Mapping[str, Any]) -> Event:
    """A drain's verdict (`DrainReport.to_json()`): `safe`, the verified `files` and
    `bytes`, `unsafe_count`, `error`, and `purged_files` when it purged."""
    purged = report.get("purged")
    return {
        "type": "drain_complete",
        "ts": utc_now(),
        "container": report["container"],
        "safe": report["safe"],
        "files": report["files"],
        "bytes": report["bytes"],
        "unsafe_count": report["unsafe_count"],
        "error": report["error"],
        "purged_files": purged["files"] if isinstance(purged, dict) else None,
    }


def media_at_risk(
    container: str, files: int, nbytes: int, oldest_s: float | None, at_risk: bool
) -> Event:
    """Media only on a container crossed the at-risk age (`at_risk`), or no longer does:
    `files` and `bytes` only on the container, the age of the oldest in seconds."""
    return {
        "type": "media_at_risk",
        "ts": utc_now(),
        "container": container,
        "at_risk": at_risk,
        "files": files,
        "bytes": nbytes,
        "oldest_s": oldest_s,
    }
