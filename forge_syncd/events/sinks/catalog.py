"""`catalog`: a SQLite table `media`, one row per synced file version, with the generation
metadata read from the file itself (prompt, seed, model, LoRAs, ...). `file_purged` fills
`purged_at`; `file_versioned` moves a row to its file's place under `.versions/`
(`versioned_at` set), so an earlier image keeps its row when a new one takes its name.

Reading metadata never fails a delivery: an unreadable or hostile file gets a row without
metadata (and a log record).

`local_path` is the file's exact path: text for a UTF-8 path (every path forge-syncd makes
from UTF-8 names), a BLOB of the exact bytes for one that is not (the event's
`local_path_b64`): metadata is read from that real file, and `find` returns it as text with
each byte that is not UTF-8 as a lone surrogate (Python's surrogateescape: `os.fsencode`
gives the bytes back). `path` stays the displayed form (`\\xNN` escapes), as events name it.

`find` answers `forge-syncctl find` on a read-only connection of its own (WAL: a query never
waits on a delivery and never holds one up). It works on narrow indexes only, then reads the
few rows it returns: the full-text table `media_text` (prompt and negative prompt, kept in
step by triggers), `media_loras` (one row per LoRA name of a file, kept by triggers), and
indexes on mtime (covering the other filter columns), container, seed and model.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forge_syncd.events.catalog_query import FOUND_KEYS, MAX_LIMIT, ROUND_2_COLUMNS, CatalogQuery
from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.library.events import exact_local_path
from forge_syncd.logs import get_logger

ROUND_1_COLUMNS = (
    ("container", "TEXT NOT NULL"),
    ("path", "TEXT NOT NULL"),
    ("local_path", "TEXT NOT NULL"),
    ("size", "INTEGER NOT NULL"),
    ("mtime", "TEXT NOT NULL"),
    ("sha256", "TEXT"),
    ("purged_at", "TEXT"),
    ("generator", "TEXT"),
    ("prompt", "TEXT"),
    ("negative_prompt", "TEXT"),
    ("seed", "INTEGER"),
    ("steps", "INTEGER"),
    ("sampler", "TEXT"),
    ("cfg_scale", "REAL"),
    ("model", "TEXT"),
    ("width", "INTEGER"),
    ("height", "INTEGER"),
    ("metadata_json", "TEXT"),
)
COLUMNS = ", ".join(f"{name} {kind}" for name, kind in ROUND_1_COLUMNS)
NAMES = ", ".join(name for name, _ in ROUND_1_COLUMNS)
ROUND_2_FIELDS = tuple(name for name, _, _ in ROUND_2_COLUMNS)
JSON_FIELDS = frozenset({"loras", "samplers"})


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


# `PRAGMA user_version` holds the schema version; MIGRATIONS[i] upgrades from i to i+1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: one row per file *version* (SPEC "Catalog, round 2"): a row follows its file into
    # `.versions/` (versioned_at set, local_path updated); at most one current row a path.
    # Version 0 (round 1) had one row per (container, path): its rows are carried over.
    (
        "CREATE TABLE IF NOT EXISTS media (" + COLUMNS + ")",
        "ALTER TABLE media RENAME TO media_v0",
        "CREATE TABLE media (id INTEGER PRIMARY KEY, "
        # `seed` without a type: ComfyUI seeds go up to 2^64 - 1, past SQLite's INTEGER,
        # so a seed above 2^63 - 1 is kept exactly, as text.
        + COLUMNS.replace("seed INTEGER", "seed")
        + ", versioned_at TEXT, metadata_error TEXT)",
        "INSERT INTO media (" + NAMES + ") SELECT " + NAMES + " FROM media_v0",  # noqa: S608
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
        *(f"ALTER TABLE media ADD COLUMN {name} {kind}" for name, kind, _ in ROUND_2_COLUMNS),
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
)
FIELDS: tuple[str, ...] = (
    "generator",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "sampler",
    "cfg_scale",
    "model",
    "width",
    "height",
    "metadata_json",
    "metadata_error",
    *ROUND_2_FIELDS,
)
INT64 = range(-(2**63), 2**63)

# Built once from the constant column lists above (no outside input reaches the SQL text).
INSERT = (
    "INSERT INTO media (container, path, local_path, size, mtime, sha256, versioned_at, "  # noqa: S608
    + ", ".join(FIELDS)
    + ") VALUES (?, ?, ?, ?, ?, ?, ?, "
    + ", ".join("?" * len(FIELDS))
    + ")"
)
UPDATE_CURRENT = (
    "UPDATE media SET local_path = ?, size = ?, mtime = ?, sha256 = ?, purged_at = NULL, "  # noqa: S608
    + ", ".join(f"{field} = ?" for field in FIELDS)
    + " WHERE container = ? AND path = ? AND versioned_at IS NULL"
)
FOUND = "SELECT " + ", ".join(FOUND_KEYS) + " FROM media"  # noqa: S608
# Every distinct value of an indexed column, one index seek each (SQLite has no loose
# index scan of its own): the model and LoRA names a substring search picks from.
DISTINCT_MODELS = (
    "WITH RECURSIVE v(name) AS (SELECT min(model) FROM media UNION ALL"
    " SELECT (SELECT min(model) FROM media WHERE model > v.name) FROM v"
    " WHERE v.name IS NOT NULL) SELECT name FROM v WHERE name IS NOT NULL"
)
DISTINCT_LORAS = (
    "WITH RECURSIVE v(name) AS (SELECT min(name) FROM media_loras UNION ALL"
    " SELECT (SELECT min(name) FROM media_loras WHERE name > v.name) FROM v"
    " WHERE v.name IS NOT NULL) SELECT name FROM v WHERE name IS NOT NULL"
)
TEXT_IDS = "SELECT rowid FROM media_text WHERE media_text MATCH ?"
LORA_IDS = "SELECT media_id FROM media_loras WHERE name IN (SELECT value FROM json_each(?))"
# A prompt or LoRA search matching at most this many rows is driven by their ids.
DRIVE_MAX = 1000
# FTS5 (unicode61) token characters: letters, numbers, private use; the rest separate words.
WORD_BREAK = re.compile(r"[\s\x00]+")


class CatalogSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.path = Path(options["path"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Another process (a gallery, the sqlite3 shell) may hold the write lock: wait.
        self.db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.log = get_logger(sink=name)
        migrate(self.db)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()

    def deliver(self, event: dict[str, Any]) -> None:
        """Apply one event; idempotent, since delivery is at least once."""
        if event["type"] == "file_synced":
            self._synced(event)
        elif event["type"] == "file_versioned":
            self._versioned(event)
        elif event["type"] == "file_purged":
            self.db.execute(
                "UPDATE media SET purged_at = ? WHERE container = ? AND path = ?"
                " AND versioned_at IS NULL",
                (event["purged_at"], event["container"], event["path"]),
            )
        elif event["type"] == "version_pruned":  # the version's file is gone: so is its row
            self.db.execute(
                "DELETE FROM media WHERE container = ? AND local_path = ?"
                " AND versioned_at IS NOT NULL",
                (event["container"], stored_path(exact_local_path(event))),
            )

    def _synced(self, event: dict[str, Any]) -> None:
        """The path's current row now describes this file (a new row if it had none)."""
        local = exact_local_path(event)
        info = self._metadata(local, event["path"])
        values = column_values(info)
        file = (stored_path(local), event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            if self.db.execute(UPDATE_CURRENT, (*file, *values, *where)).rowcount == 0:
                self.db.execute(INSERT, (*where, *file, None, *values))

    def _versioned(self, event: dict[str, Any]) -> None:
        """The path's current row follows its file into `.versions/` when it describes
        that file (same size and mtime); otherwise (a catalog added after the first sync,
        or a backfill replaying a version after the current file) the version gets a row
        made from the version file, and the current row stays."""
        local = exact_local_path(event)
        version = (stored_path(local), event["size"], event["mtime"], event.get("sha256"))
        where = (event["container"], event["path"])
        with transaction(self.db):
            done = self.db.execute(
                "SELECT 1 FROM media WHERE local_path = ? AND versioned_at IS NOT NULL",
                (version[0],),
            ).fetchone()
            if done is not None:
                return
            moved = self.db.execute(
                "UPDATE media SET local_path = ?, size = ?, mtime = ?,"
                " sha256 = coalesce(?, sha256), versioned_at = ?"
                " WHERE container = ? AND path = ? AND versioned_at IS NULL"
                " AND size = ? AND mtime = ?",
                (*version, event["versioned_at"], *where, event["size"], event["mtime"]),
            )
            if moved.rowcount == 0:
                info = self._metadata(local, event["path"])
                values = column_values(info)
                self.db.execute(INSERT, (*where, *version, event["versioned_at"], *values))

    def _metadata(self, local_path: bytes, path: str) -> GenerationInfo:
        """Read the file's generation metadata (bounded in size and time; never raises):
        what could not be read is in `metadata_error`, and the row is written anyway."""
        info = read_generation_info(local_path)
        if info.metadata_error is not None:
            self.log.warning("metadata_unreadable", path=path, error=info.metadata_error)
        return info

    def find(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """Given a search, return the matching rows (FOUND_KEYS; `loras` decoded, `seed` an
        int), newest first by mtime, at most `query.limit` (capped at MAX_LIMIT).

        User text never becomes SQL or FTS syntax: every value is a parameter and every
        prompt word is matched as a quoted FTS5 string. Raise sqlite3.Error if the catalog
        cannot be read."""
        with self._reader_lock:
            return search_rows(self._read_connection(), query)

    def _read_connection(self) -> sqlite3.Connection:
        """The read-only connection searches use (opened once, kept: its page cache)."""
        if self._reader is None:
            uri = self.path.absolute().as_uri() + "?mode=ro"
            self._reader = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
            self._reader.execute("PRAGMA query_only = 1")
        return self._reader

    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        self.db.close()


def stored_path(local: bytes) -> str | bytes:
    """Given a file's exact path, return its `local_path` value: the text of a UTF-8 path,
    the bytes themselves (a BLOB) of any other."""
    try:
        return local.decode("utf-8")
    except UnicodeDecodeError:
        return local


def column_values(info: GenerationInfo) -> list[object]:
    """Return the metadata columns of a row: an integer SQLite cannot hold as INTEGER (a
    ComfyUI seed above 2^63 - 1) as its exact decimal text, lists (LoRAs, samplers) as
    JSON text. A field this version of the metadata reader does not have is NULL."""
    values: list[object] = []
    for field in FIELDS:
        value = getattr(info, field, None)
        if field in JSON_FIELDS and value is not None:
            value = json.dumps(value, ensure_ascii=False, default=_jsonable)
        elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
            value = str(value)
        values.append(value)
    return values


def _jsonable(value: object) -> object:
    """`json.dumps` default: dataclasses as dicts, anything else as its text."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def search_words(text: str) -> list[str]:
    """Given a prompt search, return it as FTS5 strings, one a word (quotes doubled):
    each is only ever text to tokenize, never an operator, column filter or prefix."""
    return ['"' + word.replace('"', '""') + '"' for word in WORD_BREAK.split(text) if word]


def search_rows(db: sqlite3.Connection, query: CatalogQuery) -> list[dict[str, Any]]:
    """Run `query` on `db` (a read-only connection serves); return the found rows
    (FOUND_KEYS), newest first. Raise sqlite3.Error if the catalog cannot be read."""
    search = build_search(db, query)
    if search is None:
        return []
    sql, params = search
    return [found_row(row) for row in db.execute(sql, params).fetchall()]


def build_search(db: sqlite3.Connection, query: CatalogQuery) -> tuple[str, list[Any]] | None:
    """Given the read connection and a search, return the SQL and parameters that find
    its rows, or None when nothing can match (no searchable word, no such model or LoRA,
    no row with those words or LoRAs).

    The ids are chosen first, on indexes only, newest first, `limit` of them; then only
    those rows are read. A prompt or LoRA that few rows match drives the search (their
    rows are looked up); otherwise the mtime index is walked newest first, every filter
    checked from the index entry, until `limit` rows match."""
    where: list[str] = []
    params: list[Any] = []
    sets: list[tuple[str, list[Any]]] = []
    if query.prompt is not None:
        words = search_words(query.prompt)
        if not words:
            return None
        sets.append((TEXT_IDS, [" ".join(words)]))
    if query.lora is not None:
        loras = names_containing(db, DISTINCT_LORAS, query.lora)
        if not loras:
            return None
        sets.append((LORA_IDS, [json.dumps(loras)]))
    for ids_sql, ids_params in sets:
        condition = id_condition(db, ids_sql, ids_params)
        if condition is None:
            return None
        where.append(condition[0])
        params += condition[1]
    if query.model is not None:
        models = names_containing(db, DISTINCT_MODELS, query.model)
        if not models:
            return None
        # `+`: checked from the mtime index, not looked up by model (a common model would
        # mean a read of every row of it to sort them by mtime).
        where.append("+m.model IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(models))
    if query.seed is not None:
        where.append("m.seed = ?")
        params.append(query.seed if query.seed in INT64 else str(query.seed))
    if query.container is not None:
        where.append("m.container = ?")
        params.append(query.container)
    if query.since_s is not None:
        where.append("m.mtime >= ?")
        params.append(iso_cutoff(query.since_s))
    limit = max(0, min(query.limit, MAX_LIMIT))
    ids = (
        "SELECT m.id FROM media AS m"  # noqa: S608 (constant fragments; values are params)
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY m.mtime DESC, m.id DESC LIMIT ?"
    )
    sql = FOUND + " WHERE id IN (" + ids + ") ORDER BY mtime DESC, id DESC"
    return sql, [*params, limit]


def id_condition(
    db: sqlite3.Connection, ids_sql: str, params: list[Any]
) -> tuple[str, list[Any]] | None:
    """Given a query of row ids (full-text or LoRA matches), return the condition that
    keeps only those rows, or None when there is none. At most DRIVE_MAX ids are given as
    a list SQLite looks the rows up by; more are checked against each index entry (`+`:
    never used to look rows up, each would cost a read of a wide row)."""
    found = [row[0] for row in db.execute(ids_sql + " LIMIT ?", (*params, DRIVE_MAX + 1))]
    if not found:
        return None
    if len(found) <= DRIVE_MAX:
        return "m.id IN (SELECT value FROM json_each(?))", [json.dumps(found)]
    return "+m.id IN (" + ids_sql + ")", params


def names_containing(db: sqlite3.Connection, distinct_sql: str, needle: str) -> list[str]:
    """Return the distinct names (`distinct_sql`) that contain `needle`, ignoring case
    (Unicode case folding, which SQLite's LIKE does only for ASCII)."""
    wanted = needle.casefold()
    names = (row[0] for row in db.execute(distinct_sql))
    return [name for name in names if isinstance(name, str) and wanted in name.casefold()]


def iso_cutoff(since_s: float, now: datetime | None = None) -> str:
    """Return the mtime (ISO 8601 UTC, the events' format) `since_s` seconds before now."""
    moment = (now or datetime.now(UTC)) - timedelta(seconds=max(0.0, since_s))
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def found_row(row: tuple[Any, ...]) -> dict[str, Any]:
    """Given a FOUND row, return it as JSON-able values: `loras` decoded, `seed` an int,
    a `local_path` kept as bytes (not UTF-8) as text with surrogate escapes."""
    found = dict(zip(FOUND_KEYS, row, strict=True))
    if isinstance(found["local_path"], bytes):
        found["local_path"] = found["local_path"].decode("utf-8", "surrogateescape")
    if isinstance(found["loras"], str):
        try:
            found["loras"] = json.loads(found["loras"])
        except ValueError:
            found["loras"] = None
    seed = found["seed"]
    if isinstance(seed, str) and re.fullmatch(r"-?[0-9]{1,40}", seed):
        found["seed"] = int(seed)
    return found


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (ROLLBACK on error)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection) -> None:
    """Bring a catalog database (new, or made by an earlier forge-syncd) to the current
    schema, in one transaction."""
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
