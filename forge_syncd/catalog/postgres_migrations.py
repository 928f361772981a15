"""The PostgreSQL catalog's history: MIGRATIONS[i] takes a database from schema i to i + 1
(the rows of `schema_version`), and `migrate` applies what a database lacks.

Frozen: each migration is the SQL text it ran when it was written, never derived from
`schema.COLUMNS`, so that adding a column later cannot change what an old step does. The
last step must leave exactly `schema.COLUMNS` in `dialect.POSTGRES`'s types
(tests/e2e/test_postgres_schema.py checks it, from an empty database and from the dump
round 2 made).

Types: times are TIMESTAMPTZ, `seed` NUMERIC(20, 0) (a ComfyUI seed goes up to 2^64 - 1),
`loras` and `samplers` JSONB, and `search` a generated tsvector over the prompt and negative
prompt (config 'simple') for `find`.
"""

from __future__ import annotations

from typing import Any

import psycopg

# Prompt characters indexed for full text, each field: a tsvector holds at most 1 MiB, and
# 2 x 50,000 characters of distinct CJK words make about 0.5 MiB.
SEARCHED_CHARS = 50_000
SEARCH = (
    f"to_tsvector('simple', left(coalesce(prompt, ''), {SEARCHED_CHARS}) || ' ' "
    f"|| left(coalesce(negative_prompt, ''), {SEARCHED_CHARS}))"
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE media (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " container TEXT NOT NULL, path TEXT NOT NULL, local_path TEXT NOT NULL,"
        " size BIGINT NOT NULL, mtime TIMESTAMPTZ NOT NULL, sha256 TEXT, purged_at TIMESTAMPTZ,"
        " generator TEXT, prompt TEXT, negative_prompt TEXT, seed NUMERIC(20, 0),"
        " steps INTEGER, sampler TEXT, cfg_scale DOUBLE PRECISION, model TEXT, width INTEGER,"
        " height INTEGER, metadata_json TEXT, loras JSONB, vae TEXT, scheduler TEXT,"
        " denoise DOUBLE PRECISION, samplers JSONB, duration_s DOUBLE PRECISION,"
        " frame_rate DOUBLE PRECISION, versioned_at TIMESTAMPTZ, metadata_error TEXT"
        f", search tsvector GENERATED ALWAYS AS ({SEARCH}) STORED)",
        "CREATE UNIQUE INDEX media_current ON media (container, path) WHERE versioned_at IS NULL",
        "CREATE INDEX media_by_local_path ON media (container, local_path)",
        "CREATE INDEX media_by_mtime ON media (mtime DESC, id DESC)",
        "CREATE INDEX media_by_container ON media (container, mtime DESC)",
        "CREATE INDEX media_by_model ON media (model)",
        "CREATE INDEX media_by_seed ON media (seed)",
        "CREATE INDEX media_by_loras ON media USING GIN (loras jsonb_path_ops)",
        "CREATE INDEX media_search ON media USING GIN (search)",
    ),
    # 2: the exact path of a file whose path is not UTF-8 (rows made before stay NULL:
    # `forge-syncd --backfill` fills them).
    ("ALTER TABLE media ADD COLUMN local_path_bytes BYTEA",),
    # 3: the gallery (round 3): a thumbnail is found by its file's sha256, the facets
    # (front end, sampler, size) are counted on narrow indexes, not by reading every row
    # (each also serves its filter in mtime order), changes are numbered, and LoRA names
    # get a table of their own.
    (
        "CREATE INDEX media_by_sha256 ON media (sha256)",
        "CREATE INDEX media_by_generator ON media (generator, mtime DESC)",
        "CREATE INDEX media_by_sampler ON media (sampler, mtime DESC)",
        "CREATE INDEX media_by_size ON media (width, height, mtime DESC)",
        # A file's earlier versions (an item's `versions`; few rows, so a small index).
        "CREATE INDEX media_versions ON media (container, path) WHERE versioned_at IS NOT NULL",
        # Each row's last change (insert or update), numbered in commit order: a row updated
        # in place keeps its id, and ids are taken before commit (two daemons' rows may
        # become visible out of order), so the gallery's live updates follow `seq`. The
        # number is taken under a transaction-scoped advisory lock, so a later number is
        # never visible before an earlier one. SECURITY DEFINER: a role that may only
        # write `media` still writes its changes.
        "CREATE TABLE media_changes (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " media_id BIGINT NOT NULL UNIQUE)",
        "CREATE FUNCTION media_changed() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        " IF TG_OP = 'DELETE' THEN DELETE FROM media_changes WHERE media_id = OLD.id;"
        " RETURN NULL; END IF;"
        " PERFORM pg_advisory_xact_lock(28832984776131400);"  # "forge" "CH"
        " DELETE FROM media_changes WHERE media_id = NEW.id;"
        " INSERT INTO media_changes (media_id) VALUES (NEW.id); RETURN NULL; END $$",
        "CREATE TRIGGER media_changes AFTER INSERT OR DELETE ON media"
        " FOR EACH ROW EXECUTE FUNCTION media_changed()",
        # Only a real change (a redelivery or a second backfill writes the same values).
        "CREATE TRIGGER media_changes_update AFTER UPDATE ON media"
        " FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION media_changed()",
        "INSERT INTO media_changes (media_id) SELECT id FROM media ORDER BY id",
        # The LoRA names of each row (objects of `loras` with a text `name`), kept by a
        # trigger as SQLite's `media_loras` is: the gallery's LoRA facet counts them on an
        # index instead of expanding every row's JSON.
        "CREATE TABLE media_loras (media_id BIGINT NOT NULL, name TEXT NOT NULL,"
        " PRIMARY KEY (name, media_id))",
        "CREATE INDEX media_loras_by_media ON media_loras (media_id)",
        "CREATE FUNCTION media_loras_kept() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
        " SET search_path FROM CURRENT AS $$ BEGIN"
        " IF TG_OP <> 'INSERT' THEN DELETE FROM media_loras WHERE media_id = OLD.id; END IF;"
        " IF TG_OP <> 'DELETE' AND NEW.loras IS NOT NULL THEN"
        " INSERT INTO media_loras (media_id, name) SELECT DISTINCT NEW.id, lora ->> 'name'"
        " FROM jsonb_array_elements(CASE jsonb_typeof(NEW.loras) WHEN 'array' THEN NEW.loras"
        " ELSE '[]' END) AS lora WHERE jsonb_typeof(lora -> 'name') = 'string'; END IF;"
        " RETURN NULL; END $$",
        "CREATE TRIGGER media_loras_kept AFTER INSERT OR DELETE OR UPDATE OF loras ON media"
        " FOR EACH ROW EXECUTE FUNCTION media_loras_kept()",
        "INSERT INTO media_loras (media_id, name) SELECT DISTINCT id, lora ->> 'name'"
        " FROM media, jsonb_array_elements(CASE jsonb_typeof(loras) WHEN 'array' THEN loras"
        " ELSE '[]' END) AS lora WHERE jsonb_typeof(lora -> 'name') = 'string'",
    ),
    # 4 (issue 29): `duplicate_of`, the id of the first row with the same bytes (sha256 and
    # size), kept by a trigger when a row is added, gets other bytes or is deleted; existing
    # rows are marked here.
    (
        "ALTER TABLE media ADD COLUMN duplicate_of BIGINT",
        # Made by migration 3 already (the gallery's); kept for a database made by a
        # development build that ran this one first.
        "CREATE INDEX IF NOT EXISTS media_by_sha256 ON media (sha256)",
        "CREATE INDEX media_duplicates ON media (duplicate_of) WHERE duplicate_of IS NOT NULL",
        "UPDATE media AS m SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = m.sha256 AND o.size = m.size AND o.id < m.id)"
        " WHERE m.sha256 IS NOT NULL",
        "CREATE FUNCTION media_duplicate_of() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF TG_OP <> 'DELETE' THEN"
        " UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = NEW.sha256 AND o.size = NEW.size AND o.id < NEW.id)"
        " WHERE id = NEW.id;"
        " END IF;"
        " IF TG_OP = 'UPDATE' THEN"
        " UPDATE media AS m SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = m.sha256 AND o.size = m.size AND o.id < m.id)"
        " WHERE m.duplicate_of = NEW.id"
        " OR (m.sha256 = NEW.sha256 AND m.size = NEW.size AND m.id > NEW.id);"
        " ELSIF TG_OP = 'DELETE' THEN"
        " UPDATE media AS m SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = m.sha256 AND o.size = m.size AND o.id < m.id)"
        " WHERE m.duplicate_of = OLD.id;"
        " END IF; RETURN NULL; END $$",
        "CREATE TRIGGER media_duplicate_of AFTER INSERT OR DELETE OR UPDATE OF sha256, size"
        " ON media FOR EACH ROW EXECUTE FUNCTION media_duplicate_of()",
    ),
    # 5: the same rule, its id comparisons kept off the primary key (`id + 0`). Before the
    # table's first ANALYZE (a new catalog, a bulk load in one transaction) the planner
    # ANDed the sha256 index with a range scan of every id below the new row's: each
    # insert read the whole table (a COPY of 14,000 rows slowed from 1,400 to 500 rows/s,
    # 350,000 rows took over 25 minutes). Now only the sha256 index is read.
    (
        "CREATE OR REPLACE FUNCTION media_duplicate_of() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN"
        " IF TG_OP <> 'DELETE' THEN"
        " UPDATE media SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = NEW.sha256 AND o.size = NEW.size AND o.id + 0 < NEW.id)"
        " WHERE id = NEW.id;"
        " END IF;"
        " IF TG_OP = 'UPDATE' THEN"
        " UPDATE media AS m SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = m.sha256 AND o.size = m.size AND o.id + 0 < m.id)"
        " WHERE m.duplicate_of = NEW.id"
        " OR (m.sha256 = NEW.sha256 AND m.size = NEW.size AND m.id + 0 > NEW.id);"
        " ELSIF TG_OP = 'DELETE' THEN"
        " UPDATE media AS m SET duplicate_of = (SELECT min(o.id) FROM media AS o"
        " WHERE o.sha256 = m.sha256 AND o.size = m.size AND o.id + 0 < m.id)"
        " WHERE m.duplicate_of = OLD.id;"
        " END IF; RETURN NULL; END $$",
    ),
)
# The advisory lock key of a migration (one bigint; see postgres sink for the others).
MIGRATION_LOCK = 0x666F726765_5359  # "forge" "SY"
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE schema_version"
    " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring the database (empty, or kept by any forge-syncd) to the current schema, one
    migration a transaction, each under an advisory lock so daemons starting together
    apply it once. Raise RuntimeError if the schema is newer than this code."""
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            # Looked up first: a role that may only read and write rows can run a daemon
            # once the schema is there (CREATE ... IF NOT EXISTS wants CREATE on the schema).
            found = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if found is None or found[0] is None:
                conn.execute(SCHEMA_VERSION_TABLE)
            row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
            version = int(row[0]) if row is not None else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"catalog schema version {version} is newer than this forge-syncd understands"
                )
            if version == len(MIGRATIONS):
                return
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version + 1,))
