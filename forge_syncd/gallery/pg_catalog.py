"""The gallery's read-only view of a PostgreSQL catalog (the `postgres` sink's database),
which several daemons may feed.

The same rows, in the same shapes, as the SQLite reader (`gallery/catalog.py`): searches
through `catalog/postgres_search.py` (`find`'s filters, and the gallery's), items with
their versions, facet counts on indexes, the rows added after an id. Connections are the
sink's client settings (`postgres_link.CONNECT_DEFAULTS`, the DSN overriding them), at most
POOL of them, each in read-only transactions (`default_transaction_read_only`) with every
statement bounded by STATEMENT_TIMEOUT_MS; a connection that breaks is replaced once. The
schema is the daemons' business: the gallery never migrates (it could not: read-only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from forge_syncd.catalog.postgres_search import find_filters, gallery_filters
from forge_syncd.catalog.query import MAX_LIMIT, CatalogQuery
from forge_syncd.events.sinks.postgres_link import CONNECT_DEFAULTS, database_name
from forge_syncd.gallery.source import (
    CHANGE_KEYS,
    ITEM_KEYS,
    LIST_KEYS,
    PROMPT_PREVIEW,
    VERSION_KEYS,
    CatalogUnavailable,
    FacetCache,
    count_facets,
    plain,
    why,
)

T = TypeVar("T")
POOL = 4
STATEMENT_TIMEOUT_MS = 10_000
DEFAULTS = CONNECT_DEFAULTS | {"application_name": "forge-sync-gallery"}
LIST = ", ".join(
    f"left(prompt, {PROMPT_PREVIEW})" if key == "prompt" else key
    for key in (*LIST_KEYS, "local_path_bytes")
)
ITEM = ", ".join((*ITEM_KEYS, "local_path_bytes"))


def exact(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its exact `local_path` (from `local_path_bytes` when that is set) and
    JSON-able values."""
    raw = row.pop("local_path_bytes", None)
    if raw is not None:
        row["local_path"] = bytes(raw)
    return plain(row)


class PostgresCatalog:
    def __init__(self, dsn: str, pool: int = POOL) -> None:
        self.dsn = dsn
        self.where = database_name(dsn)
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(pool)
        self._lock = threading.Lock()
        self.facet_cache = FacetCache(self._count_facets)
        probe = "SELECT 1 FROM media, media_changes LIMIT 1"
        self._run(lambda conn: conn.execute(probe).fetchall())

    def _connect(self) -> psycopg.Connection[Any]:
        given = conninfo_to_dict(self.dsn)
        extra = {k: v for k, v in DEFAULTS.items() if k not in given}
        conn = psycopg.connect(make_conninfo(self.dsn, **extra), autocommit=True)
        try:
            conn.execute("SET default_transaction_read_only = on")
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", (str(STATEMENT_TIMEOUT_MS),)
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Return `work(connection)` on a pooled connection; a kept one found broken is
        replaced and `work` tried once more. Raise CatalogUnavailable (saying why) when the
        database cannot be reached or refuses."""
        if not self._slots.acquire(timeout=STATEMENT_TIMEOUT_MS / 1000):
            raise CatalogUnavailable(f"{self.where}: every connection is busy; try again")
        try:
            for last_try in (False, True):
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                reused = conn is not None
                try:
                    conn = conn or self._connect()
                    result = work(conn)
                except psycopg.OperationalError as exc:
                    if conn is not None:
                        conn.close()
                    if last_try or not reused:
                        raise CatalogUnavailable(f"cannot read {self.where}: {exc}") from None
                    continue
                except psycopg.Error as exc:
                    if conn is not None and (conn.broken or conn.closed):
                        conn.close()
                    elif conn is not None:
                        self._give_back(conn)
                    raise CatalogUnavailable(f"cannot read {self.where}: {why(exc)}") from None
                self._give_back(conn)
                return result
            raise AssertionError("unreachable")
        finally:
            self._slots.release()

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._idle.append(conn)

    def _rows(self, sql: str, params: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        def read(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            return [exact(dict(zip(keys, r, strict=True))) for r in conn.execute(sql, params)]

        return self._run(read)

    def search(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """The rows (LIST_KEYS) `query` finds, newest first (mtime, then id)."""
        where, params = find_filters(query, datetime.now(UTC))
        more, more_params = gallery_filters(query)
        where += more
        params |= more_params | {"limit": max(0, min(query.limit, MAX_LIMIT))}
        sql = (
            f"SELECT {LIST} FROM media"  # noqa: S608 (constant fragments; values are params)
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY mtime DESC, id DESC LIMIT %(limit)s"
        )
        return self._rows(sql, params, (*LIST_KEYS, "local_path_bytes"))

    def changed_after(self, last: int, limit: int = 100) -> list[dict[str, Any]]:
        """The rows added or updated after change `last`, in commit order (`media_changes`:
        live updates)."""
        sql = (
            f"SELECT seq, {LIST} FROM media_changes JOIN media ON id = media_id"  # noqa: S608
            " WHERE seq > %s ORDER BY seq LIMIT %s"
        )
        return self._rows(sql, (last, limit), (*CHANGE_KEYS, "local_path_bytes"))

    def last_change(self) -> int:
        found = self._run(
            lambda conn: conn.execute("SELECT max(seq) FROM media_changes").fetchone()
        )
        return int(found[0] or 0) if found is not None else 0

    def item(self, item_id: int) -> dict[str, Any] | None:
        """Every column of one row, and `versions`: the rows of the same file (container and
        path), newest first, on `media_current` and `media_versions`."""
        if not 0 < item_id < 2**63:
            return None
        found = self._rows(
            f"SELECT {ITEM} FROM media WHERE id = %s",  # noqa: S608
            (item_id,),
            (*ITEM_KEYS, "local_path_bytes"),
        )
        if not found:
            return None
        row = found[0]
        versions = "SELECT id, mtime, size, versioned_at FROM media WHERE container = %s"
        versions += " AND path = %s AND versioned_at IS {} NULL"
        row["versions"] = self._rows(
            versions.format("")
            + " UNION ALL "
            + versions.format("NOT")
            + " ORDER BY mtime DESC, id DESC LIMIT 100",
            (row["container"], row["path"]) * 2,
            VERSION_KEYS,
        )
        return row

    def source_of(self, sha256: str) -> dict[str, Any] | None:
        """The newest row of a file with this content (`media_by_sha256`), or None."""
        found = self._run(
            lambda conn: conn.execute(
                "SELECT id FROM media WHERE sha256 = %s ORDER BY id DESC LIMIT 1", (sha256,)
            ).fetchone()
        )
        return None if found is None else self.item(int(found[0]))

    def facets(self) -> dict[str, Any]:
        """As the SQLite reader's (`FacetCache`: at most FACET_TTL_S old)."""
        return self.facet_cache.get()

    def _count_facets(self) -> dict[str, Any]:
        return self._run(self._count_on)

    def _count_on(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        return count_facets(conn.execute, "%s")
