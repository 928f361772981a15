"""`postgres`: the media catalog of the `catalog` sink, in PostgreSQL, for many daemons.

The table `media` holds the same rows as the SQLite catalog (one per file version; see
`sinks/catalog.py`) in PostgreSQL's types; the schema, its migrations and the search are in
`catalog/` (`postgres_migrations.py`, `postgres_search.py`), the kept connections in
`postgres_link.py`.

Several daemons may feed one database, each its own containers, concurrently, and every
event may come more than once: a file's current row is written with one INSERT ... ON
CONFLICT on the partial unique index of current rows, each event in one transaction, and
migrations run under a transaction-scoped advisory lock. A database that is down makes
`deliver` raise (the dispatcher retries with backoff) and the next delivery reconnects.

`find` has a connection of its own (a search never waits behind a delivery stuck on a lock
or a slow trigger) and a `statement_timeout` of SEARCH_TIMEOUT_S: a database that does not
answer in time makes it raise SearchTimedOut, naming the database, rather than hold the
control request until the client gives up.

Reading metadata never fails a delivery; a value the database refuses (a number past its
column, a prompt past the full-text limits) leaves the row without metadata and says why in
`metadata_error`.

A file whose path is not valid UTF-8 (which TEXT cannot hold) keeps its exact path in
`local_path_bytes` (BYTEA; NULL when `local_path` is exact) beside the displayed
`local_path` (`\\xNN` escapes); its metadata is read from that real file, and `find`
returns it as the SQLite catalog does (text with surrogate escapes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from forge_syncd.catalog import schema
from forge_syncd.catalog.dialect import POSTGRES, pg_text
from forge_syncd.catalog.postgres_search import search_rows
from forge_syncd.catalog.query import CatalogQuery, SearchTimedOut
from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.events.sinks.postgres_link import (
    CONNECT_DEFAULTS,
    SEARCH_DEFAULTS,
    SEARCH_TIMEOUT_S,
    Link,
    database_name,
)
from forge_syncd.library.events import exact_local_path
from forge_syncd.logs import get_logger

T = TypeVar("T")

# The advisory lock of a container's version rows: the pair (CONTAINER_LOCK,
# hashtext(container)), a key space apart from the migration's single bigint.
CONTAINER_LOCK = 0x66737964  # "fsyd"

WRITTEN = schema.METADATA
# The exact path of a file whose path is not UTF-8 is kept in `local_path_bytes`.
FILE = (*schema.FILE, "local_path_bytes")
# Built once from the constant column lists above (no outside input reaches the SQL text).
UPSERT_CURRENT = (
    "INSERT INTO media (container, path, "  # noqa: S608
    + ", ".join((*FILE, *WRITTEN))
    + ") VALUES ("
    + ", ".join(["%s"] * (2 + len(FILE) + len(WRITTEN)))
    + ") ON CONFLICT (container, path) WHERE versioned_at IS NULL DO UPDATE SET purged_at = NULL, "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in (*FILE, *WRITTEN))
)
INSERT_VERSION = (
    "INSERT INTO media (container, path, versioned_at, "  # noqa: S608
    + ", ".join((*FILE, *WRITTEN))
    + ") VALUES ("
    + ", ".join(["%s"] * (3 + len(FILE) + len(WRITTEN)))
    + ")"
)

# What PostgreSQL may refuse in metadata: the row is written again without it.
REFUSED = (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded, UnicodeEncodeError)


class PostgresSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.dsn = str(options["dsn"])
        self.log = get_logger(sink=name)
        # Deliveries and searches each have their own connection: a search never waits for
        # a delivery stuck behind a lock, and it is bounded by a statement timeout.
        self.delivery = Link("deliveries", self.dsn, CONNECT_DEFAULTS, self.log)
        self.search = Link("searches", self.dsn, SEARCH_DEFAULTS, self.log, SEARCH_TIMEOUT_S * 1000)
        self.last_read: tuple[object, GenerationInfo] | None = None

    def deliver(self, event: dict[str, Any]) -> None:
        """Apply one event in one transaction; idempotent, since delivery is at least once.
        Raise psycopg.Error if the database cannot be reached or refuses the change."""
        if event["type"] == "file_synced":
            self._with_connection(lambda conn: self._synced(conn, event))
        elif event["type"] == "file_versioned":
            self._with_connection(lambda conn: self._versioned(conn, event))
        elif event["type"] == "file_purged":
            self._with_connection(
                lambda conn: conn.execute(
                    "UPDATE media SET purged_at = %s WHERE container = %s AND path = %s"
                    " AND versioned_at IS NULL",
                    (event["purged_at"], pg_text(event["container"]), pg_text(event["path"])),
                )
            )
        elif event["type"] == "version_pruned":  # the version's file is gone: so is its row
            self._with_connection(
                lambda conn: conn.execute(
                    "DELETE FROM media WHERE container = %s AND local_path = %s"
                    " AND local_path_bytes IS NOT DISTINCT FROM %s AND versioned_at IS NOT NULL",
                    (pg_text(event["container"]), *exact_path_values(event)),
                )
            )

    def _synced(self, conn: psycopg.Connection[Any], event: dict[str, Any]) -> None:
        """The path's current row now describes this file (a new row if it had none)."""
        where = (pg_text(event["container"]), pg_text(event["path"]))
        info = self._metadata(event)

        def write(values: Sequence[object]) -> None:
            with conn.transaction():
                conn.execute(UPSERT_CURRENT, (*where, *file_values(event), *values))

        self._write_or_refuse(write, POSTGRES.metadata_values(info), event)

    def _versioned(self, conn: psycopg.Connection[Any], event: dict[str, Any]) -> None:
        """The path's current row follows its file into `.versions/` (a row is made from
        the version file if there is none, e.g. a sink added after the first sync)."""
        where = (pg_text(event["container"]), pg_text(event["path"]))
        version = file_values(event)

        def write(values: Sequence[object]) -> None:
            with conn.transaction():
                # One daemon changes a container's rows anyway; the lock keeps this
                # check-then-write right should two share a container name.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (CONTAINER_LOCK, where[0])
                )
                if _version_recorded(conn, where[0], version[0], version[4]):
                    return
                # Only the row of this very file moves (same size and mtime); otherwise (a
                # backfill replaying old versions, a sink added late) the version gets a row
                # of its own, made from its file, as the SQLite catalog does.
                moved = conn.execute(
                    "UPDATE media SET local_path = %s, size = %s, mtime = %s,"
                    " sha256 = coalesce(%s, sha256), local_path_bytes = %s, versioned_at = %s"
                    " WHERE container = %s AND path = %s AND versioned_at IS NULL"
                    " AND size = %s AND mtime = %s",
                    (*version, event["versioned_at"], *where, version[1], version[2]),
                )
                if moved.rowcount == 0:
                    conn.execute(INSERT_VERSION, (*where, event["versioned_at"], *version, *values))

        values: list[object] = [None] * len(WRITTEN)
        current = conn.execute(
            "SELECT 1 FROM media WHERE container = %s AND path = %s AND versioned_at IS NULL"
            " AND size = %s AND mtime = %s",
            (*where, version[1], version[2]),
        ).fetchone()
        if current is None and not _version_recorded(conn, where[0], version[0], version[4]):
            values = POSTGRES.metadata_values(self._metadata(event))  # a row made from the file
        self._write_or_refuse(write, values, event)

    def _write_or_refuse(
        self, write: Callable[[Sequence[object]], None], values: list[object], event: dict[str, Any]
    ) -> None:
        """Write the row; if PostgreSQL refuses its metadata, write it without (and why)."""
        try:
            write(values)
        except REFUSED as exc:
            reason = f"refused by the database: {type(exc).__name__}: {exc}"[:500]
            self.log.warning("metadata_refused", path=event["path"], error=reason)
            write([None] * (len(values) - 1) + [reason])

    def _metadata(self, event: dict[str, Any]) -> GenerationInfo:
        """Read the file's generation metadata once per event (a retry after a failed write
        reuses it); never raises."""
        key = (event.get("id"), event["local_path"])
        if self.last_read is not None and self.last_read[0] == key:
            return self.last_read[1]
        info = read_generation_info(exact_local_path(event))
        if info.metadata_error is not None:
            self.log.warning("metadata_unreadable", path=event["path"], error=info.metadata_error)
        self.last_read = (key, info)
        return info

    def find(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """Return the rows matching `query` (FOUND_KEYS), newest first, on the search
        connection. Raise SearchTimedOut if the database does not answer within
        SEARCH_TIMEOUT_S, psycopg.Error if it cannot be reached."""
        where_db = database_name(self.dsn)
        if not self.search.lock.acquire(timeout=SEARCH_TIMEOUT_S):
            raise SearchTimedOut(
                f"another search of {where_db} has been running for over {SEARCH_TIMEOUT_S} s;"
                " try again"
            )
        try:
            return self.search.run(lambda conn: search_rows(conn, query))
        except psycopg.errors.QueryCanceled:
            raise SearchTimedOut(
                f"{where_db} did not answer within {SEARCH_TIMEOUT_S} s (statement_timeout):"
                " a table locked by another session, or the server overloaded; try again"
            ) from None
        finally:
            self.search.lock.release()

    def _with_connection(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Return `work(connection)` on the delivery connection (see Link.run)."""
        with self.delivery.lock:
            return self.delivery.run(work)

    def close(self) -> None:
        """Close both connections; one still busy after CLOSE_WAIT_S (a database that stopped
        answering mid-delivery) is left for the process's exit."""
        for link in (self.delivery, self.search):
            if not link.close():
                self.log.warning("sink_close_abandoned", error="a statement is still waiting")


def _version_recorded(
    conn: psycopg.Connection[Any], container: object, local_path: object, exact: object
) -> bool:
    """Return whether a version row of this file is there already (a redelivery)."""
    found = conn.execute(
        "SELECT 1 FROM media WHERE container = %s AND local_path = %s AND versioned_at IS NOT NULL"
        " AND local_path_bytes IS NOT DISTINCT FROM %s",
        (container, local_path, exact),
    ).fetchone()
    return found is not None


def exact_path_values(event: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """Return (local_path, local_path_bytes) of an event's file, as the rows keep them: the
    exact path's bytes only when `local_path` is not that path."""
    local = exact_local_path(event)
    exact = None if os.fsencode(str(event["local_path"])) == local else local
    return pg_text(event["local_path"]), exact


def file_values(event: dict[str, Any]) -> tuple[object, ...]:
    """Return (local_path, size, mtime, sha256, local_path_bytes) of an event's file: the
    exact path's bytes only when `local_path` is not that path."""
    local_path, exact = exact_path_values(event)
    return (local_path, event["size"], event["mtime"], pg_text(event.get("sha256")), exact)
