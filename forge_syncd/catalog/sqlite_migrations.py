"""The SQLite catalog's history: MIGRATIONS[i] takes a database from schema i to i + 1
(`PRAGMA user_version`), and `migrate` applies what a database lacks.

Frozen: each migration is the SQL text it ran when it was written, never derived from
`schema.COLUMNS`, so that adding a column later cannot change what an old step does. The
last step must leave exactly `schema.COLUMNS` (tests/unit/test_catalog_schema.py checks it,
from an empty file and from the fixtures rounds 1 and 2 made).
"""

from __future__ import annotations

import sqlite3

from forge_syncd.library.sqlitetx import transaction

# Round 1 (schema 0): one row per (container, path). `{seed}` is the seed column's text.
ROUND_1_TABLE = (
    "container TEXT NOT NULL, path TEXT NOT NULL, local_path TEXT NOT NULL,"
    " size INTEGER NOT NULL, mtime TEXT NOT NULL, sha256 TEXT, purged_at TEXT, generator TEXT,"
    " prompt TEXT, negative_prompt TEXT, {seed}, steps INTEGER, sampler TEXT, cfg_scale REAL,"
    " model TEXT, width INTEGER, height INTEGER, metadata_json TEXT"
)
ROUND_1_NAMES = (
    "container, path, local_path, size, mtime, sha256, purged_at, generator, prompt,"
    " negative_prompt, seed, steps, sampler, cfg_scale, model, width, height, metadata_json"
)

# Every column of `media` at schema 3 (frozen: the columns whose change is announced).
ROUND_3_NAMES = (
    *ROUND_1_NAMES.split(", "),
    *("loras", "vae", "scheduler", "denoise", "samplers", "duration_s", "frame_rate"),
    *("versioned_at", "metadata_error"),
)


def _text_triggers() -> tuple[str, ...]:
    """The triggers that keep the external-content full-text table `media_text` equal to
    `media`'s prompt columns (an FTS5 'delete' must be given the values it indexed)."""
    add = (
        "INSERT INTO media_text (rowid, prompt, negative_prompt)"
        " VALUES (new.id, new.prompt, new.negative_prompt);"
    )
    remove = (
        "INSERT INTO media_text (media_text, rowid, prompt, negative_prompt)"
        " VALUES ('delete', old.id, old.prompt, old.negative_prompt);"
    )
    return (
        f"CREATE TRIGGER media_text_insert AFTER INSERT ON media BEGIN {add} END",
        f"CREATE TRIGGER media_text_delete AFTER DELETE ON media BEGIN {remove} END",
        "CREATE TRIGGER media_text_update AFTER UPDATE OF prompt, negative_prompt ON media"
        " WHEN old.prompt IS NOT new.prompt OR old.negative_prompt IS NOT new.negative_prompt"
        f" BEGIN {remove} {add} END",
    )


# The LoRA names of a row's `loras` JSON (objects with a text `name`; anything else, or
# text that is not JSON, in a hand-edited or foreign row is skipped rather than failing
# the write).
LORA_NAMES = (
    "SELECT DISTINCT {row}.id, json_extract(value, '$.name')"
    " FROM json_each(CASE WHEN json_valid({row}.loras) THEN {row}.loras END)"
    " WHERE type = 'object' AND json_type(value, '$.name') = 'text'"
)


def _lora_triggers() -> tuple[str, ...]:
    """The triggers that keep `media_loras` equal to the names in `media.loras`."""
    add = "INSERT OR IGNORE INTO media_loras (media_id, name) " + LORA_NAMES.format(row="new")
    return (
        "CREATE TRIGGER media_loras_insert AFTER INSERT ON media WHEN new.loras IS NOT NULL"
        f" BEGIN {add}; END",
        "CREATE TRIGGER media_loras_delete AFTER DELETE ON media"
        " BEGIN DELETE FROM media_loras WHERE media_id = old.id; END",
        "CREATE TRIGGER media_loras_update AFTER UPDATE OF loras ON media"  # noqa: S608
        " WHEN old.loras IS NOT new.loras BEGIN"
        " DELETE FROM media_loras WHERE media_id = old.id;"
        f" {add}; END",
    )


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: one row per file *version* (SPEC "Catalog, round 2"): a row follows its file into
    # `.versions/` (versioned_at set, local_path updated); at most one current row a path.
    # Version 0 (round 1) had one row per (container, path): its rows are carried over.
    (
        "CREATE TABLE IF NOT EXISTS media (" + ROUND_1_TABLE.format(seed="seed INTEGER") + ")",
        "ALTER TABLE media RENAME TO media_v0",
        "CREATE TABLE media (id INTEGER PRIMARY KEY, "
        # `seed` without a type: ComfyUI seeds go up to 2^64 - 1, past SQLite's INTEGER,
        # so a seed above 2^63 - 1 is kept exactly, as text.
        + ROUND_1_TABLE.format(seed="seed")
        + ", versioned_at TEXT, metadata_error TEXT)",
        f"INSERT INTO media ({ROUND_1_NAMES}) SELECT {ROUND_1_NAMES} FROM media_v0",  # noqa: S608
        "DROP TABLE media_v0",
        "CREATE UNIQUE INDEX media_current ON media (container, path) WHERE versioned_at IS NULL",
        "CREATE INDEX media_by_local_path ON media (local_path)",
    ),
    # 2: the round-2 columns, and search (`find`): full text over the prompts, LoRA names,
    # and indexes for the other filters. `media_find` covers every column a search filters
    # on, so a search in mtime order never reads the (wide) rows it does not return.
    # Existing rows are indexed here (their new columns stay empty until re-read:
    # `forge-syncd --backfill`).
    (
        "ALTER TABLE media ADD COLUMN loras TEXT",
        "ALTER TABLE media ADD COLUMN vae TEXT",
        "ALTER TABLE media ADD COLUMN scheduler TEXT",
        "ALTER TABLE media ADD COLUMN denoise REAL",
        "ALTER TABLE media ADD COLUMN samplers TEXT",
        "ALTER TABLE media ADD COLUMN duration_s REAL",
        "ALTER TABLE media ADD COLUMN frame_rate REAL",
        "CREATE VIRTUAL TABLE media_text USING fts5(prompt, negative_prompt,"
        " content='media', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        *_text_triggers(),
        "INSERT INTO media_text (media_text) VALUES ('rebuild')",
        "CREATE TABLE media_loras (media_id INTEGER NOT NULL, name TEXT NOT NULL,"
        " PRIMARY KEY (name, media_id)) WITHOUT ROWID",
        "CREATE INDEX media_loras_by_media ON media_loras (media_id)",
        *_lora_triggers(),
        "INSERT OR IGNORE INTO media_loras (media_id, name) "
        + LORA_NAMES.format(row="media").replace(" FROM json_each", " FROM media, json_each"),
        "CREATE INDEX media_find ON media (mtime, container, seed, model)",
        "CREATE INDEX media_by_container ON media (container, mtime)",
        "CREATE INDEX media_by_seed ON media (seed)",
        "CREATE INDEX media_by_model ON media (model)",
    ),
    # 3: the gallery (round 3): a thumbnail is found by its file's sha256, the facets
    # (front end, sampler, size) are counted on narrow indexes, not by reading every row
    # (each also serves its filter in mtime order), and changes are numbered.
    (
        "CREATE INDEX media_by_sha256 ON media (sha256)",
        "CREATE INDEX media_by_generator ON media (generator, mtime)",
        "CREATE INDEX media_by_sampler ON media (sampler, mtime)",
        "CREATE INDEX media_by_size ON media (width, height, mtime)",
        # Each row's last change (insert or update), in the order they were written: a row
        # updated in place keeps its id, so new ids alone would never announce it (the
        # gallery's live updates follow `seq`). AUTOINCREMENT: never a number given twice.
        "CREATE TABLE media_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " media_id INTEGER NOT NULL UNIQUE)",
        "CREATE TRIGGER media_changes_insert AFTER INSERT ON media"
        " BEGIN INSERT INTO media_changes (media_id) VALUES (new.id); END",
        # Only a real change (a redelivery or a second backfill writes the same values).
        "CREATE TRIGGER media_changes_update AFTER UPDATE ON media WHEN "  # noqa: S608
        + " OR ".join(f"old.{name} IS NOT new.{name}" for name in ROUND_3_NAMES)
        + " BEGIN DELETE FROM media_changes WHERE media_id = new.id;"
        " INSERT INTO media_changes (media_id) VALUES (new.id); END",
        "CREATE TRIGGER media_changes_delete AFTER DELETE ON media"
        " BEGIN DELETE FROM media_changes WHERE media_id = old.id; END",
        "INSERT INTO media_changes (media_id) SELECT id FROM media ORDER BY id",
    ),
    # 4 (issue 29): `duplicate_of`, the id of the first row with the same bytes (sha256 and
    # size), kept by triggers when a row is added, gets other bytes or is deleted; existing
    # rows are marked here.
    (
        "ALTER TABLE media ADD COLUMN duplicate_of INTEGER",
        # Made by migration 3 already (the gallery's); kept for a database made by a
        # development build that ran this one first.
        "CREATE INDEX IF NOT EXISTS media_by_sha256 ON media (sha256)",
        "CREATE INDEX media_duplicates ON media (duplicate_of) WHERE duplicate_of IS NOT NULL",
        "UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = media.sha256 AND o.size = media.size AND o.id < media.id)"
        " WHERE sha256 IS NOT NULL",
        "CREATE TRIGGER media_duplicate_insert AFTER INSERT ON media WHEN new.sha256 IS NOT NULL"
        " BEGIN UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = new.sha256 AND o.size = new.size AND o.id < new.id)"
        " WHERE id = new.id; END",
        "CREATE TRIGGER media_duplicate_update AFTER UPDATE OF sha256, size ON media BEGIN"
        " UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = new.sha256 AND o.size = new.size AND o.id < new.id)"
        " WHERE id = new.id;"
        " UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = media.sha256 AND o.size = media.size AND o.id < media.id)"
        " WHERE duplicate_of = new.id"
        " OR (sha256 = new.sha256 AND size = new.size AND id > new.id); END",
        "CREATE TRIGGER media_duplicate_delete AFTER DELETE ON media WHEN old.sha256 IS NOT NULL"
        " BEGIN UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = media.sha256 AND o.size = media.size AND o.id < media.id)"
        " WHERE duplicate_of = old.id; END",
    ),
)


def migrate(db: sqlite3.Connection) -> None:
    """Bring a catalog database (new, or made by an earlier forge-syncd) to the current
    schema, in one transaction. Raise RuntimeError if it is newer than this code."""
    with transaction(db):
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"catalog schema version {version} is newer than this forge-syncd understands"
            )
        for step in MIGRATIONS[version:]:
            for statement in step:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
