"""The manifest: what was synced, as SQLite in `state_dir/manifest.sqlite`.

One row per remote file ever synced, keyed by (container, path as raw bytes), with the remote
(size, mtime) it had when copied, its sha256 when known and whether it was since purged; and
one row per run. WAL mode; every change is one transaction, so a crash leaves the previous
consistent state. `PRAGMA user_version` holds the schema version; `MIGRATIONS[i]` upgrades
from version i to i+1 (schema.py).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from forge_syncd.library import sqlitetx
from forge_syncd.library.manifest.files import FileRows
from forge_syncd.library.manifest.outbox import Outbox
from forge_syncd.library.manifest.runs import RunRows
from forge_syncd.library.manifest.schema import MIGRATIONS, SCHEMA_VERSION
from forge_syncd.library.manifest.shared import SharedRows
from forge_syncd.library.manifest.versions import VersionRows


class Manifest:
    """A handle on the manifest database, safe to share between threads. What it keeps:
    `files` (file rows, purge intents, files from the future), `versions`, `runs`, the
    event `outbox` and `shared` (files by their bytes). `on_events`: called after a
    commit that added events."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        self.on_events: Callable[[], None] | None = None
        self.outbox = Outbox(self)
        self.versions = VersionRows(self, self.outbox)
        self.files = FileRows(self, self.outbox, self.versions)
        self.runs = RunRows(self, self.outbox)
        self.shared = SharedRows(self)  # files by their bytes (`library.dedupe`)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    @classmethod
    def open(cls, state_dir: Path) -> Manifest:
        """Open (creating and migrating as needed) the manifest in `state_dir`."""
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        return cls(state_dir / "manifest.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self.transaction() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this forge-syncd "
                    f"understands ({SCHEMA_VERSION}); upgrade forge-syncd"
                )
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection, under the handle's lock, to read with."""
        with self._lock:
            yield self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield the connection inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); after
        a commit that added events, call `on_events` (the dispatcher's wake-up)."""
        with self._lock:
            self.outbox.fresh = False
            with sqlitetx.transaction(self._db):
                yield self._db
            notify = self.outbox.fresh and self.on_events is not None
        if notify and self.on_events is not None:
            self.on_events()
