"""`forge-syncd --backfill`: index a library that is already synced into every catalog sink,
and queue it for every mirror sink (`mirror_sinks`: the daemon then copies it).

For each file the manifest records as copied (state `synced`, or `purged`: deleted from
the container, still in the library) and each kept earlier version under `.versions/`, the
event the daemon would have emitted is delivered straight to the sinks that keep a catalog
(`catalog`, `postgres`, a plugin with `find`): a path's versions oldest first as
`file_versioned`, then its current file as `file_synced` (and `file_purged`, with the
manifest's time, when it was purged). Sinks apply events idempotently, so a second backfill
changes nothing. It holds the state's lock (statelock.py): it refuses to run beside a
daemon (or another --once) on the same state. A file whose
library copy is missing or has another size than recorded is skipped (the daemon fetches
it again, and its event follows).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

from forge_syncd.config import Config
from forge_syncd.events.dispatcher import CATALOG_TYPES
from forge_syncd.events.metadata import read_generation_info
from forge_syncd.events.sinks import Sink, load_sink
from forge_syncd.library.events import file_purged, file_synced, file_versioned
from forge_syncd.library.manifest import Event, Manifest, SyncedFile, VersionMove, py_mtime
from forge_syncd.text import plural

RUN_ID = "backfill"


@dataclass
class BackfillCounts:
    """What a backfill did: files indexed, of them with generation metadata and with a
    `metadata_error`, files skipped (no library copy of the recorded size), seconds."""

    files: int = 0
    with_metadata: int = 0
    with_error: int = 0
    skipped: int = 0
    seconds: float = 0.0
    sinks: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.files / self.seconds if self.seconds > 0 else 0.0
        return (
            f"backfill: {plural(self.files, 'file')} indexed into {', '.join(self.sinks)}"
            f" ({self.with_metadata} with metadata, {self.with_error} with metadata_error,"
            f" {self.skipped} skipped: not in the library as recorded)"
            f" in {self.seconds:.2f} s, {rate:.0f} files/s"
        )


@dataclass(frozen=True)
class LibraryFile:
    """One file to index: its events, its local path and the size the manifest recorded."""

    events: list[Event]
    local_path: bytes
    size: int


def catalog_sinks(config: Config) -> list[tuple[str, Sink]]:
    """Return (name, sink) of each configured sink that keeps a catalog (built now; the
    others are closed again). Raise what building a sink raises."""
    found: list[tuple[str, Sink]] = []
    for sink_config in config.ingest:
        if sink_config.type not in CATALOG_TYPES:
            continue
        sink = load_sink(sink_config)
        if callable(getattr(sink, "find", None)):
            found.append((sink_config.name, sink))
        else:
            sink.close()
    return found


def mirror_sinks(config: Config) -> list[tuple[str, Sink]]:
    """Return (name, sink) of each mirror sink, built to queue only: the files backfilled
    are copied by the daemon (or the next `--once`) from its state."""
    return [
        (c.name, load_sink(replace(c, options={**c.options, "copier": False}), config.state_dir))
        for c in config.ingest
        if c.type == "mirror"
    ]


def manifest_containers(state_dir: Path) -> set[str]:
    """Return the names of the containers the manifest holds files of."""
    with closing(read_manifest(state_dir)) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT container FROM files")}


def library_files(
    state_dir: Path, media_root: Path, containers: list[str]
) -> Iterator[LibraryFile]:
    """Given the state and media folders and the containers to index, yield their files:
    each container's kept versions oldest first, then its copied files, path by path."""
    with closing(read_manifest(state_dir)) as db:
        for container in containers:
            container_dir = os.path.join(os.fsencode(media_root), container.encode())
            versions = db.execute(
                "SELECT path, version_path, size, mtime_ns, sha256, versioned_at FROM versions"
                " WHERE container = ? AND state = 'kept' ORDER BY path, versioned_at",
                (container,),
            ).fetchall()
            for row in versions:
                move = VersionMove(
                    bytes(row[0]), bytes(row[1]), row[2], py_mtime(row[3]), row[4], row[5]
                )
                event = file_versioned(container, RUN_ID, container_dir, move)
                local = os.path.join(container_dir, move.version_path)
                yield LibraryFile([event], local, move.size)
            files = db.execute(
                "SELECT path, size, mtime_ns, sha256, purged_at FROM files"
                " WHERE container = ? AND state IN ('synced', 'purged') ORDER BY path",
                (container,),
            ).fetchall()
            for path, size, mtime_ns, sha256, purged_at in files:
                synced = SyncedFile(bytes(path), size, py_mtime(mtime_ns), sha256)
                events = [file_synced(container, RUN_ID, container_dir, synced)]
                if purged_at is not None:
                    purged = file_purged(container, RUN_ID, bytes(path), size)
                    events.append({**purged, "purged_at": purged_at})
                yield LibraryFile(events, os.path.join(container_dir, bytes(path)), size)


def read_manifest(state_dir: Path) -> sqlite3.Connection:
    """Return a read-only connection to the manifest (a running daemon may write it)."""
    uri = (state_dir / "manifest.sqlite").absolute().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=30)


def backfill(sinks: list[tuple[str, Sink]], files: Iterable[LibraryFile]) -> BackfillCounts:
    """Deliver each file's events to every sink; return the counts. A file with no library
    copy of its recorded size is skipped. Raise what a sink's delivery raises (a database
    that cannot be reached): what was delivered before stays."""
    counts = BackfillCounts(sinks=[name for name, _ in sinks])
    started = time.monotonic()
    for item in files:
        try:
            present = os.stat(item.local_path).st_size == item.size
        except OSError:
            present = False
        if not present:
            counts.skipped += 1
            continue
        for _, sink in sinks:
            for event in item.events:
                sink.deliver(event)
        info = read_generation_info(item.local_path)
        counts.files += 1
        counts.with_metadata += info.generator is not None
        counts.with_error += info.metadata_error is not None
    counts.seconds = time.monotonic() - started
    return counts


def prepare_manifest(state_dir: Path) -> None:
    """Create or migrate the manifest (as the daemon would) so it can be read."""
    Manifest.open(state_dir).close()
