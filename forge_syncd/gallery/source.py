"""What the gallery reads a catalog through: `CatalogReader`, which the SQLite reader
(`gallery/catalog.py`) and the PostgreSQL one (`gallery/pg_catalog.py`) implement, the row
shapes they return, and the facet counts' short-lived cache they share.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.schema import COLUMNS

PROMPT_PREVIEW = 500  # characters of a prompt a grid row carries
LIST_KEYS: tuple[str, ...] = ("id", "container", "path", "local_path", "size", "mtime")
LIST_KEYS += ("sha256", "generator", "prompt", "model", "sampler", "seed", "width", "height")
LIST_KEYS += ("duration_s", "versioned_at", "purged_at")
CHANGE_KEYS = ("change", *LIST_KEYS)
ITEM_KEYS = ("id", *(column.name for column in COLUMNS))
VERSION_KEYS = ("id", "mtime", "size", "versioned_at")
JSON_KEYS = ("loras", "samplers")
FACETS = ("container", "generator", "model", "sampler")
FACET_TOP = 50
FACET_TTL_S = 30.0


class CatalogUnavailable(Exception):
    """The catalog cannot be opened or read (the message says why)."""


OLD_SCHEMA = "media_changes"  # a table the catalog has from schema 3 on


def why(error: Exception) -> str:
    """An error reading the catalog, with what to do when its schema is older than the
    gallery's (a daemon of this version migrates it when it starts)."""
    if OLD_SCHEMA in str(error):
        return f"{error} (the catalog is older than this gallery: start forge-syncd once)"
    return str(error)


class CatalogReader(Protocol):
    """A read-only view of one catalog. Rows are dicts of JSON-able values (`plain`)."""

    def search(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """The rows (LIST_KEYS, prompt cut to PROMPT_PREVIEW) `query` finds, newest first
        (mtime, then id)."""

    def changed_after(self, last: int, limit: int = 100) -> list[dict[str, Any]]:
        """The rows (LIST_KEYS and `change`, their change number) added or updated after
        change `last`, in the order they were written (live updates)."""

    def last_change(self) -> int:
        """The number of the last change (0: none)."""

    def item(self, item_id: int) -> dict[str, Any] | None:
        """Every column (ITEM_KEYS) of one row and its `versions` (VERSION_KEYS), or None."""

    def source_of(self, sha256: str) -> dict[str, Any] | None:
        """A row of a file with this content (the newest), or None (an indexed lookup)."""

    def facets(self) -> dict[str, Any]:
        """Each facet's most common values with counts, the mtime range, the total."""


def stamp(moment: datetime) -> str:
    """A time as the catalog's rows give it (the events' ISO 8601 UTC text)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """Given a row as read, return it JSON-able: a non-UTF-8 `local_path` (bytes) as text
    with surrogate escapes, JSON lists decoded, times as ISO 8601 UTC text, a seed kept as
    text (past 2^63) or NUMERIC as an int."""
    local = row.get("local_path")
    if isinstance(local, bytes):
        row["local_path"] = local.decode("utf-8", "surrogateescape")
    for key in JSON_KEYS:
        if isinstance(row.get(key), str):
            try:
                row[key] = json.loads(row[key])
            except ValueError:
                row[key] = None
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = stamp(value)
    seed = row.get("seed")
    text_seed = isinstance(seed, str) and seed.lstrip("-").isdigit() and len(seed) <= 40
    if isinstance(seed, Decimal) or text_seed:
        row["seed"] = int(str(seed))
    return row


class FacetCache:
    """Facet counts, counted at most every FACET_TTL_S: a page gets the last counts at once
    and, once they are older, one background thread counts again; only the first calls
    wait, for one count (those arriving while it runs wait for it, not count again: the
    gallery's worker counts at start, and a page opened meanwhile shares its count). An
    error while recounting keeps the last counts (the next call tries again)."""

    def __init__(self, count: Callable[[], dict[str, Any]], ttl_s: float = FACET_TTL_S) -> None:
        self.count = count
        self.ttl_s = ttl_s
        self.counted: tuple[float, dict[str, Any]] | None = None
        self._counting = threading.Lock()
        self._first = threading.Lock()

    def get(self) -> dict[str, Any]:
        cached = self.counted
        if cached is None:
            with self._first:
                cached = self.counted
                if cached is None:
                    return self._count()
        if time.monotonic() - cached[0] >= self.ttl_s and self._counting.acquire(blocking=False):
            threading.Thread(target=self._recount, name="facets", daemon=True).start()
        return cached[1]

    def _count(self) -> dict[str, Any]:
        counted = self.count()
        self.counted = (time.monotonic(), counted)
        return counted

    def _recount(self) -> None:
        try:
            self._count()
        except Exception:  # the last counts stay; the next call asks again
            self.counted = (time.monotonic(), self.counted[1]) if self.counted else None
        finally:
            self._counting.release()


def counts(rows: Any) -> list[dict[str, Any]]:
    """(value, count) rows as the facets give them."""
    return [{"value": value, "count": count} for value, count in rows]


# The mtime range, one index seek each (in one SELECT, SQLite would scan for both).
MTIME_RANGE = "SELECT (SELECT min(mtime) FROM media), (SELECT max(mtime) FROM media)"


def count_facets(execute: Callable[..., Any], mark: str) -> dict[str, Any]:
    """Count the facets through a connection's `execute(sql[, params])` (sqlite3's or
    psycopg's), `mark` its placeholder (`?` or `%s`), on indexes only: each facet's
    FACET_TOP most common values, the LoRA names from `media_loras` (kept by a trigger;
    expanding every row's `loras` instead reads the whole table: 1.4-2.3 s at 350,000 rows),
    the sizes, then `finish_counts`."""
    top = (FACET_TOP,)
    counted: dict[str, Any] = {}
    for column in FACETS:
        counted[column] = counts(
            execute(
                f"SELECT {column}, count(*) AS n FROM media WHERE {column} IS NOT NULL"  # noqa: S608
                f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT {mark}",
                top,
            )
        )
    counted["lora"] = counts(
        execute(
            "SELECT name, count(*) AS n FROM media_loras GROUP BY name ORDER BY n DESC, name"  # noqa: S608
            f" LIMIT {mark}",
            top,
        )
    )
    counted["size"] = [
        {"value": f"{width}x{height}", "count": count}
        for width, height, count in execute(
            "SELECT width, height, count(*) AS n FROM media WHERE width IS NOT NULL"  # noqa: S608
            f" AND height IS NOT NULL GROUP BY width, height ORDER BY n DESC LIMIT {mark}",
            top,
        )
    ]
    found = execute(MTIME_RANGE).fetchone()
    first, last = found if found is not None else (None, None)

    def count(column: str) -> int:
        total = execute(f"SELECT count({column}) FROM media").fetchone()  # noqa: S608
        return int(total[0]) if total is not None else 0

    return finish_counts(counted, first, last, count)


def finish_counts(
    counted: dict[str, Any], first: Any, last: Any, count: Callable[[str], int]
) -> dict[str, Any]:
    """Add `total`, `metadata` (rows with a front end or not) and `mtime` (first, last) to
    the facet counts. The total is the sum of the container counts and the rows with
    metadata that of the generator counts when every value was counted (fewer than
    FACET_TOP); otherwise `count(column)` counts them (`*`: every row)."""

    def summed(facet: str, column: str) -> int:
        if len(counted[facet]) < FACET_TOP:
            return sum(int(entry["count"]) for entry in counted[facet])
        return count(column)

    total, read = summed("container", "*"), summed("generator", "generator")
    counted["metadata"] = [{"value": "yes", "count": read}, {"value": "no", "count": total - read}]
    times = plain({"first": first, "last": last})
    counted["mtime"] = {"first": times["first"], "last": times["last"]}
    counted["total"] = total
    return counted
