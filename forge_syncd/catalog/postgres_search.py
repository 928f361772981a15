"""The PostgreSQL catalog's search (`find`): one SELECT, every filter a parameter.

Prompt words match the generated tsvector `search` (config 'simple'), model and LoRA names
by substring (ILIKE, escaped), newest first by the (mtime, id) index. As in the SQLite
catalog, a prompt without any word matches nothing, and NUL breaks words.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from forge_syncd.catalog.dialect import pg_text
from forge_syncd.catalog.query import MAX_LIMIT, CatalogQuery
from forge_syncd.catalog.schema import FOUND_KEYS

SELECT_FOUND = (
    "SELECT " + ", ".join((*FOUND_KEYS, "local_path_bytes")) + " FROM media"  # noqa: S608
)


# A LoRA substring: the distinct names in `media_loras` (kept by a trigger from each row's
# `loras`), one index seek each (PostgreSQL 15 has no skip scan of its own), those that
# match, then the rows holding them by the (name, media_id) key. Reading each row's JSON
# instead walked the mtime index through every row for a rare name (p95 280 ms at 350,000
# rows).
LORA_MATCH = (
    "id IN (SELECT media_id FROM media_loras WHERE name IN ("
    "WITH RECURSIVE v(name) AS (SELECT min(name) FROM media_loras UNION ALL"
    " SELECT (SELECT min(l.name) FROM media_loras l WHERE l.name > v.name) FROM v"
    " WHERE v.name IS NOT NULL)"
    " SELECT name FROM v WHERE name ILIKE %(lora)s ESCAPE '\\'))"
)


def like_pattern(value: str) -> str:
    """Return an ILIKE pattern (ESCAPE '\\') matching `value` anywhere, literally."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def find_filters(query: CatalogQuery, now: datetime) -> tuple[list[str], dict[str, Any]]:
    """Given a query and the time now, return its WHERE conditions (SQL text made only of
    constants) and their parameters. As in the SQLite catalog, a prompt without any word
    matches nothing, and NUL breaks words."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if query.prompt is not None:
        params["prompt"] = pg_text(query.prompt.replace("\x00", " "))
        # numnode: no word, no match (and no NOTICE about an empty query).
        where.append(
            "numnode(plainto_tsquery('simple', %(prompt)s)) > 0"
            " AND search @@ plainto_tsquery('simple', %(prompt)s)"
        )
    if query.model is not None:
        params["model"] = like_pattern(pg_text(query.model) or "")
        where.append("model ILIKE %(model)s ESCAPE '\\'")
    if query.seed is not None:
        params["seed"] = Decimal(query.seed)
        where.append("seed = %(seed)s")
    if query.lora is not None:
        params["lora"] = like_pattern(pg_text(query.lora) or "")
        where.append(LORA_MATCH)
    if query.container is not None:
        params["container"] = pg_text(query.container)
        where.append("container = %(container)s")
    if query.since_s is not None:
        params["since"] = since(now, query.since_s)
        where.append("mtime >= %(since)s")
    return where, params


def gallery_filters(query: CatalogQuery) -> tuple[list[str], dict[str, Any]]:
    """The gallery's conditions (exact generator and sampler, an mtime range, a size,
    whether metadata was read, the rows after a cursor) and their parameters, as
    `sqlite_search.gallery_filters` has them. Times are ISO 8601 text (`after`, `before`,
    the cursor's mtime: the caller checked them)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for column in ("generator", "sampler"):
        value = getattr(query, column)
        if value is not None:
            params[column] = pg_text(value)
            where.append(f"{column} = %({column})s")
    if query.after is not None:
        params["after"] = query.after
        where.append("mtime >= %(after)s::timestamptz")
    if query.before is not None:
        params["before"] = query.before
        where.append("mtime < %(before)s::timestamptz")
    if query.size is not None:
        params["width"], params["height"] = query.size
        where.append("width = %(width)s AND height = %(height)s")
    if query.has_metadata is not None:
        where.append("generator IS NOT NULL" if query.has_metadata else "generator IS NULL")
    if query.hide_duplicates:
        where.append("duplicate_of IS NULL")
    if query.cursor is not None:
        params["cursor_mtime"], params["cursor_id"] = query.cursor
        where.append("(mtime, id) < (%(cursor_mtime)s::timestamptz, %(cursor_id)s)")
    return where, params


def since(now: datetime, seconds: float) -> datetime:
    """Return `now` less `seconds` (at most back to year 1; NaN: no limit; less than 0: now)."""
    earliest = datetime(1, 1, 2, tzinfo=UTC)
    if math.isnan(seconds):
        return earliest
    return now - timedelta(seconds=min(max(0.0, seconds), (now - earliest).total_seconds()))


def search_rows(conn: psycopg.Connection[Any], query: CatalogQuery) -> list[dict[str, Any]]:
    """Run `query` on `conn` (SELECTs only: a read-only session serves); return the found
    rows (FOUND_KEYS), newest first."""
    where, params = find_filters(query, datetime.now(UTC))
    sql = (
        SELECT_FOUND
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY mtime DESC, id DESC LIMIT %(limit)s"
    )
    params["limit"] = max(0, min(query.limit, MAX_LIMIT))
    with conn.cursor(row_factory=dict_row) as cursor:
        return [found_row(row) for row in cursor.execute(sql, params).fetchall()]


def found_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return a found row as JSON-able values: times as ISO 8601 UTC text, seed an int."""
    out: dict[str, Any] = {}
    for key in FOUND_KEYS:
        value = row[key]
        exact = row.get("local_path_bytes") if key == "local_path" else None
        if exact is not None:
            value = bytes(exact).decode("utf-8", "surrogateescape")
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        elif isinstance(value, Decimal):
            value = int(value)
        out[key] = value
    return out
