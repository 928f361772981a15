"""The manifest (`Manifest`, db.py): what was synced, in SQLite. Split by what it keeps:
files.py (file rows), versions.py, runs.py, outbox.py; rows.py (the rows as Python sees
them), schema.py (the migrations)."""

from forge_syncd.library.manifest.db import Manifest
from forge_syncd.library.manifest.rows import (
    TRIGGERS,
    Event,
    FileRecord,
    FileState,
    RunRecord,
    SyncedFile,
    VersionMove,
    VersionState,
    db_mtime,
    py_mtime,
    utc_now,
)
from forge_syncd.library.manifest.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TRIGGERS",
    "Event",
    "FileRecord",
    "FileState",
    "Manifest",
    "RunRecord",
    "SyncedFile",
    "VersionMove",
    "VersionState",
    "db_mtime",
    "py_mtime",
    "utc_now",
]
