"""The SQLite catalog's search (`find`): on narrow indexes only, then the few rows it returns.

The full-text table `media_text` (prompt and negative prompt, kept in step by triggers),
`media_loras` (one row per LoRA name of a file, kept by triggers), and indexes on mtime
(covering the other filter columns), container, seed and model. User text never becomes
SQL or FTS syntax: every value is a parameter and every prompt word is matched as a quoted
FTS5 string.
"""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from forge_syncd.catalog.dialect import SQLITE
from forge_syncd.catalog.query import MAX_LIMIT, CatalogQuery
from forge_syncd.catalog.schema import FOUND_KEYS, Kind

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
# The same, as a check of one row (`m`) in the mtime walk.
TEXT_ROW = "EXISTS (SELECT 1 FROM media_text WHERE media_text MATCH ? AND rowid = m.id)"
LORA_ROW = (
    "EXISTS (SELECT 1 FROM media_loras WHERE media_id = m.id"
    " AND name IN (SELECT value FROM json_each(?)))"
)
# A prompt or LoRA search matching at most this many rows is driven by their ids.
DRIVE_MAX = 1000
# One matching at least 1/COMMON of the rows is checked row by row in mtime order (about
# COMMON x limit rows are read): cheaper than collecting every match (half the catalog,
# for a tag like "masterpiece").
COMMON = 20
# FTS5 (unicode61) token characters: letters, numbers, private use; the rest separate words.
WORD_BREAK = re.compile(r"[\s\x00]+")


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
    """Given the read connection and a search, return the SQL and parameters that read its
    rows (FOUND_KEYS, newest first), or None when nothing can match (`build_ids`)."""
    ids = build_ids(db, query)
    if ids is None:
        return None
    return FOUND + " WHERE id IN (" + ids[0] + ") ORDER BY mtime DESC, id DESC", ids[1]


def build_ids(db: sqlite3.Connection, query: CatalogQuery) -> tuple[str, list[Any]] | None:
    """Given the read connection and a search, return the SQL and parameters that select
    the ids of its rows (`m.id`), or None when nothing can match (no searchable word, no
    such model or LoRA, no row with those words or LoRAs).

    The ids are chosen first, on indexes only, newest first, `limit` of them; then only
    those rows are read. A prompt or LoRA that few rows match drives the search (their
    rows are looked up); otherwise the mtime index is walked newest first, every filter
    checked from the index entry, until `limit` rows match."""
    where: list[str] = []
    params: list[Any] = []
    sets: list[tuple[str, str, list[Any]]] = []
    if query.prompt is not None:
        words = search_words(query.prompt)
        if not words:
            return None
        sets.append((TEXT_IDS, TEXT_ROW, [" ".join(words)]))
    if query.lora is not None:
        loras = names_containing(db, DISTINCT_LORAS, query.lora)
        if not loras:
            return None
        sets.append((LORA_IDS, LORA_ROW, [json.dumps(loras)]))
    for ids_sql, row_sql, ids_params in sets:
        condition = id_condition(db, ids_sql, ids_params, row_sql)
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
        params.append(SQLITE.convert(Kind.SEED, query.seed))
    if query.container is not None:
        where.append("m.container = ?")
        params.append(query.container)
    if query.since_s is not None:
        where.append("m.mtime >= ?")
        params.append(iso_cutoff(query.since_s))
    gallery_filters(query, where, params)
    limit = max(0, min(query.limit, MAX_LIMIT))
    ids = (
        "SELECT m.id FROM media AS m"  # noqa: S608 (constant fragments; values are params)
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY m.mtime DESC, m.id DESC LIMIT ?"
    )
    return ids, [*params, limit]


def gallery_filters(query: CatalogQuery, where: list[str], params: list[Any]) -> None:
    """Add the gallery's conditions (exact generator and sampler, an mtime range, a size,
    whether metadata was read, no duplicates, the rows after a cursor) to `where` and
    `params`."""
    for column in ("generator", "sampler"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"m.{column} = ?")
            params.append(value)
    if query.after is not None:
        where.append("m.mtime >= ?")
        params.append(query.after)
    if query.before is not None:
        where.append("m.mtime < ?")
        params.append(query.before)
    if query.size is not None:
        where.append("m.width = ? AND m.height = ?")
        params += list(query.size)
    if query.has_metadata is not None:
        where.append("m.generator IS NOT NULL" if query.has_metadata else "m.generator IS NULL")
    if query.hide_duplicates:
        where.append("m.duplicate_of IS NULL")
    if query.cursor is not None:
        where.append("(m.mtime < ? OR (m.mtime = ? AND m.id < ?))")
        params += [query.cursor[0], query.cursor[0], query.cursor[1]]


def id_condition(
    db: sqlite3.Connection, ids_sql: str, params: list[Any], row_sql: str
) -> tuple[str, list[Any]] | None:
    """Given a query of row ids (full-text or LoRA matches) and the same as a check of one
    row, return the condition that keeps only those rows, or None when there is none. At
    most DRIVE_MAX ids are given as a list SQLite looks the rows up by; a set of at least
    1/COMMON of the rows is checked on each index entry of the mtime walk (`row_sql`: a few
    rows are read before enough match); others are collected once and each index entry
    is checked against them (`+`: never used to look rows up, each would cost a read of a
    wide row)."""
    found = [row[0] for row in db.execute(ids_sql + " LIMIT ?", (*params, DRIVE_MAX + 1))]
    if not found:
        return None
    if len(found) <= DRIVE_MAX:
        return "m.id IN (SELECT value FROM json_each(?))", [json.dumps(found)]
    (rows,) = db.execute("SELECT coalesce(max(id), 0) FROM media").fetchone()
    common = max(DRIVE_MAX + 1, int(rows) // COMMON)
    (many,) = db.execute(
        f"SELECT count(*) FROM ({ids_sql} LIMIT ?)",  # noqa: S608 (constant SQL)
        (*params, common),
    ).fetchone()
    if many >= common:
        return row_sql, params
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
