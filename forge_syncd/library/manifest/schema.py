"""The manifest's schema: `MIGRATIONS[i]` upgrades a database from version i to i+1, and
`PRAGMA user_version` holds the version a database is at (SQL text, one step per release
that changed it)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE files (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('synced', 'purged')),
        synced_at TEXT NOT NULL,
        purged_at TEXT,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        container TEXT NOT NULL,
        job TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        result TEXT,
        files INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_start ON runs (started_at);
    """,
    # 2: the event outbox, written in the same transaction as what it reports, and one
    # delivery cursor per sink.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        container TEXT,
        body TEXT NOT NULL
    );
    CREATE TABLE sink_cursors (
        sink TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    );
    """,
    # 3: remote deletions announced before they are made, so that a crash between a remote
    # delete and its record is reconciled by the next cleanup (no file_purged event lost).
    """
    CREATE TABLE purge_intents (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    """,
    # 4: earlier versions of library files (versions.py), `forgotten` files (deleted from
    # the library by the user under `on_local_delete: forget`), and the files from the
    # future the last listing saw (ready once two looks agree, also across `--once` runs).
    # SQLite cannot change a CHECK constraint in place: the files table is rebuilt.
    """
    CREATE TABLE files_v4 (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        state TEXT NOT NULL CHECK (state IN ('synced', 'purged', 'forgotten')),
        synced_at TEXT NOT NULL,
        purged_at TEXT,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    INSERT INTO files_v4 SELECT container, path, size, mtime_ns, sha256, state, synced_at,
        purged_at FROM files;
    DROP TABLE files;
    ALTER TABLE files_v4 RENAME TO files;
    CREATE TABLE versions (
        container TEXT NOT NULL,
        version_path BLOB NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT,
        versioned_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'kept', 'pruned')),
        pruned_at TEXT,
        PRIMARY KEY (container, version_path)
    ) WITHOUT ROWID;
    CREATE INDEX versions_by_state ON versions (container, state, versioned_at);
    CREATE TABLE future_files (
        container TEXT NOT NULL,
        path BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        PRIMARY KEY (container, path)
    ) WITHOUT ROWID;
    """,
    # 5: `recheck`: a synced row whose size and mtime do not prove its bytes (read within a
    # clock tick of its mtime, or found different from the remote's at a purge): the next
    # look fetches the file again instead of taking it as unchanged. Also from 5, an mtime
    # outside SQLite's 64-bit integers (before 1677, after 2262) is stored as a decimal BLOB
    # (`db_mtime`): older versions never wrote one.
    """
    ALTER TABLE files ADD COLUMN recheck INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: what started each run (`TRIGGERS`; NULL for runs recorded before 6) and whether it
    # was a dry run; an index for a container's runs by job, newest first (`history NAME`,
    # the last run that copied files).
    """
    ALTER TABLE runs ADD COLUMN trigger TEXT;
    ALTER TABLE runs ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_by_container ON runs (container, job, started_at);
    """,
    # 7: duplicates stored once (`library.dedupe`, library/dedupe.py): library files found
    # by their bytes (size and sha256; or whether any has a size), and `shared_at`: the
    # `synced_at` of a copy made to share another's blocks (the saved bytes gauge); a file
    # landed again has a new `synced_at`, so an old mark no longer counts.
    """
    CREATE INDEX files_by_size ON files (size, sha256) WHERE sha256 IS NOT NULL;
    CREATE INDEX versions_by_size ON versions (size, sha256) WHERE sha256 IS NOT NULL;
    ALTER TABLE files ADD COLUMN shared_at TEXT;
    CREATE INDEX files_shared ON files (shared_at) WHERE shared_at IS NOT NULL;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
