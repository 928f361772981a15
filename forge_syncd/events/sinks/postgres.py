"""`postgres`: the media catalog of the `catalog` sink, in PostgreSQL, for many daemons.

The table `media` holds the same rows as the SQLite catalog (one per file version; see
`sinks/catalog.py`) with PostgreSQL types: times are TIMESTAMPTZ, `seed` NUMERIC(20, 0) (a
ComfyUI seed goes up to 2^64 - 1), `loras` and `samplers` JSONB, and `search` a generated
tsvector over the prompt and negative prompt (config 'simple') for `find`.

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

import dataclasses
import json
import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from forge_syncd.events.catalog_query import (
    FOUND_KEYS,
    MAX_LIMIT,
    ROUND_2_COLUMNS,
    CatalogQuery,
    SearchTimedOut,
)
from forge_syncd.events.metadata import GenerationInfo, read_generation_info
from forge_syncd.library.events import exact_local_path
from forge_syncd.logs import get_logger

T = TypeVar("T")

# The file's own columns, then the metadata ones: the names of catalog.ROUND_1_COLUMNS
# (a unit test keeps them the same), PostgreSQL types.
FILE_COLUMNS = (
    ("container", "TEXT NOT NULL"),
    ("path", "TEXT NOT NULL"),
    ("local_path", "TEXT NOT NULL"),
    ("size", "BIGINT NOT NULL"),
    ("mtime", "TIMESTAMPTZ NOT NULL"),
    ("sha256", "TEXT"),
    ("purged_at", "TIMESTAMPTZ"),
)
METADATA_COLUMNS = (
    ("generator", "TEXT"),
    ("prompt", "TEXT"),
    ("negative_prompt", "TEXT"),
    ("seed", "NUMERIC(20, 0)"),
    ("steps", "INTEGER"),
    ("sampler", "TEXT"),
    ("cfg_scale", "DOUBLE PRECISION"),
    ("model", "TEXT"),
    ("width", "INTEGER"),
    ("height", "INTEGER"),
    ("metadata_json", "TEXT"),
    *((name, pg_type) for name, _, pg_type in ROUND_2_COLUMNS),
)
# Prompt characters indexed for full text, each field: a tsvector holds at most 1 MiB, and
# 2 x 50,000 characters of distinct CJK words make about 0.5 MiB.
SEARCHED_CHARS = 50_000
SEARCH = (
    f"to_tsvector('simple', left(coalesce(prompt, ''), {SEARCHED_CHARS}) || ' ' "
    f"|| left(coalesce(negative_prompt, ''), {SEARCHED_CHARS}))"
)

# MIGRATIONS[i] takes the schema from version i to i + 1, in one transaction.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE media (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        + ", ".join(f"{name} {kind}" for name, kind in (*FILE_COLUMNS, *METADATA_COLUMNS))
        + ", versioned_at TIMESTAMPTZ, metadata_error TEXT"
        + f", search tsvector GENERATED ALWAYS AS ({SEARCH}) STORED)",
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
)
# Advisory lock keys: the migration (one bigint); a container's version rows (the pair
# CONTAINER_LOCK, hashtext(container): a key space apart from single bigints).
MIGRATION_LOCK = 0x666F726765_5359  # "forge" "SY"
CONTAINER_LOCK = 0x66737964  # "fsyd"
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE schema_version"
    " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

WRITTEN = (*(name for name, _ in METADATA_COLUMNS), "metadata_error")
FILE = ("local_path", "size", "mtime", "sha256", "local_path_bytes")
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
SELECT_FOUND = (
    "SELECT " + ", ".join((*FOUND_KEYS, "local_path_bytes")) + " FROM media"  # noqa: S608
)

# Client defaults a DSN may override: fail a connection attempt, and notice a dead server
# under an open connection, in seconds rather than at TCP's own pace (minutes).
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "application_name": "forge-syncd",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "60000",  # ms: data sent and never acknowledged
}
# A search (`forge-syncctl find`) is answered or refused within seconds: its connection,
# each statement and the wait for a search already running are bounded by this.
SEARCH_TIMEOUT_S = 5
SEARCH_DEFAULTS = {
    **CONNECT_DEFAULTS,
    "connect_timeout": str(SEARCH_TIMEOUT_S),
    "application_name": "forge-syncd find",
    "tcp_user_timeout": str(2 * SEARCH_TIMEOUT_S * 1000),
}
CLOSE_WAIT_S = 3.0
# What PostgreSQL may refuse in metadata: the row is written again without it.
REFUSED = (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded, UnicodeEncodeError)


class Link:
    """One kept connection to the database and the lock its users take turns on.

    `purpose` names it in the log; `defaults` are client settings the DSN may override;
    `statement_timeout_ms`, when given, bounds every statement of the connection (lock
    waits included)."""

    def __init__(
        self,
        purpose: str,
        dsn: str,
        defaults: dict[str, str],
        log: Any,
        statement_timeout_ms: int | None = None,
    ) -> None:
        self.purpose = purpose
        self.dsn = dsn
        self.defaults = defaults
        self.log = log
        self.statement_timeout_ms = statement_timeout_ms
        self.lock = threading.Lock()
        self.conn: psycopg.Connection[Any] | None = None

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Return `work(connection)`, connecting first if need be. A kept connection found
        dead (the server restarted, an idle timeout) is replaced and `work` tried once more;
        raise psycopg.Error if the database still cannot be reached. The caller holds
        `lock`."""
        for last_try in (False, True):
            reused = self.conn is not None
            conn = self._connection()
            try:
                return work(conn)
            except psycopg.errors.QueryCanceled:
                self._drop_if_broken()
                raise  # a statement over its timeout: the connection itself is fine
            except psycopg.OperationalError:
                self._drop_if_broken()
                if last_try or not reused or self.conn is not None:
                    raise
            except BaseException:
                self._drop_if_broken()
                raise
        raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection[Any]:
        """Return the open connection, connecting (and migrating) first if there is none."""
        if self.conn is None or self.conn.closed:
            given = conninfo_to_dict(self.dsn)
            extra = {k: v for k, v in self.defaults.items() if k not in given}
            conn = psycopg.connect(make_conninfo(self.dsn, **extra), autocommit=True)
            try:
                if self.statement_timeout_ms is not None:
                    conn.execute(
                        "SELECT set_config('statement_timeout', %s, false)",
                        (str(self.statement_timeout_ms),),
                    )
                migrate(conn)
            except BaseException:
                conn.close()
                raise
            self.conn = conn
            self.log.info("sink_connected", purpose=self.purpose)
        return self.conn

    def _drop_if_broken(self) -> None:
        """Forget a connection that failed, so the next call opens a new one."""
        if self.conn is not None and (self.conn.broken or self.conn.closed):
            self.conn.close()
            self.conn = None

    def close(self) -> bool:
        """Close the connection; return False if it was still busy after CLOSE_WAIT_S (a
        database that stopped answering mid-statement): it is left for the process's exit,
        so shutdown is not held up."""
        if not self.lock.acquire(timeout=CLOSE_WAIT_S):
            return False
        try:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        finally:
            self.lock.release()
        return True


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
                    (event["purged_at"], text(event["container"]), text(event["path"])),
                )
            )
        elif event["type"] == "version_pruned":  # the version's file is gone: so is its row
            self._with_connection(
                lambda conn: conn.execute(
                    "DELETE FROM media WHERE container = %s AND local_path = %s"
                    " AND local_path_bytes IS NOT DISTINCT FROM %s AND versioned_at IS NOT NULL",
                    (text(event["container"]), *exact_path_values(event)),
                )
            )

    def _synced(self, conn: psycopg.Connection[Any], event: dict[str, Any]) -> None:
        """The path's current row now describes this file (a new row if it had none)."""
        where = (text(event["container"]), text(event["path"]))
        info = self._metadata(event)

        def write(values: Sequence[object]) -> None:
            with conn.transaction():
                conn.execute(UPSERT_CURRENT, (*where, *file_values(event), *values))

        self._write_or_refuse(write, metadata_values(info), event)

    def _versioned(self, conn: psycopg.Connection[Any], event: dict[str, Any]) -> None:
        """The path's current row follows its file into `.versions/` (a row is made from
        the version file if there is none, e.g. a sink added after the first sync)."""
        where = (text(event["container"]), text(event["path"]))
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
            values = metadata_values(self._metadata(event))  # the row is made from the file
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


# -- values: Python to PostgreSQL and back ------------------------------------------------------
INT32 = range(-(2**31), 2**31)
NUMERIC_20 = range(-(10**20) + 1, 10**20)
SURROGATE = re.compile("[\ud800-\udfff]")


def text(value: object) -> str | None:
    """Return a string PostgreSQL can store: NUL (which TEXT cannot hold) and lone
    surrogates (which UTF-8 cannot encode) become U+FFFD; None for a non-string."""
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "\ufffd")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = SURROGATE.sub("\ufffd", value)
    return value


def _integer(allowed: range) -> Callable[[object], int | None]:
    def convert(value: object) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value in allowed:
            return value
        return None

    return convert


def _double(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _json_tree(value: object) -> object:
    """Return `value` as JSON PostgreSQL accepts: strings cleaned (JSONB refuses \\u0000),
    non-finite numbers as null, dataclasses as objects, other things as null."""
    if isinstance(value, str):
        return text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {text(str(key)): _json_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_tree(item) for item in value]
    return None


def _jsonb(value: object) -> Jsonb | None:
    """Return a JSON column's value (given decoded, or as JSON text)."""
    if value is None:
        return None
    try:
        if isinstance(value, str | bytes):
            value = json.loads(value)
        return Jsonb(_json_tree(value))
    except (ValueError, RecursionError):
        return None


CONVERT: dict[str, Callable[[object], object]] = {
    "TEXT": text,
    "INTEGER": _integer(INT32),
    "NUMERIC(20, 0)": _integer(NUMERIC_20),
    "DOUBLE PRECISION": _double,
    "JSONB": _jsonb,
}


def metadata_values(info: object) -> list[object]:
    """Given what `read_generation_info` returned, return the WRITTEN columns (metadata,
    then metadata_error, which also names any value that does not fit its column)."""
    values: list[object] = []
    dropped: list[str] = []
    for name, kind in METADATA_COLUMNS:
        raw = getattr(info, name, None)
        value = CONVERT[kind](raw)
        if raw is not None and value is None:
            dropped.append(f"malformed: {name} does not fit {kind}")
        values.append(value)
    problems = [p for p in (getattr(info, "metadata_error", None), *dropped) if p]
    values.append(text("; ".join(str(p) for p in problems)) if problems else None)
    return values


def exact_path_values(event: dict[str, Any]) -> tuple[str | None, bytes | None]:
    """Return (local_path, local_path_bytes) of an event's file, as the rows keep them: the
    exact path's bytes only when `local_path` is not that path."""
    local = exact_local_path(event)
    exact = None if os.fsencode(str(event["local_path"])) == local else local
    return text(event["local_path"]), exact


def file_values(event: dict[str, Any]) -> tuple[object, ...]:
    """Return (local_path, size, mtime, sha256, local_path_bytes) of an event's file: the
    exact path's bytes only when `local_path` is not that path."""
    local_path, exact = exact_path_values(event)
    return (local_path, event["size"], event["mtime"], text(event.get("sha256")), exact)


def database_name(dsn: str) -> str:
    """Return how a message names the DSN's database: "PostgreSQL database 'media' on
    db.lan:5432" (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database"
    name = f"PostgreSQL database {info.get('dbname') or info.get('user') or '?'!r}"
    host = info.get("host")
    if host:
        name += f" on {host}" + (f":{info['port']}" if info.get("port") else "")
    return name


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
        params["prompt"] = text(query.prompt.replace("\x00", " "))
        # numnode: no word, no match (and no NOTICE about an empty query).
        where.append(
            "numnode(plainto_tsquery('simple', %(prompt)s)) > 0"
            " AND search @@ plainto_tsquery('simple', %(prompt)s)"
        )
    if query.model is not None:
        params["model"] = like_pattern(text(query.model) or "")
        where.append("model ILIKE %(model)s ESCAPE '\\'")
    if query.seed is not None:
        params["seed"] = Decimal(query.seed)
        where.append("seed = %(seed)s")
    if query.lora is not None:
        params["lora"] = like_pattern(text(query.lora) or "")
        where.append(
            "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof(loras)"
            " WHEN 'array' THEN loras ELSE '[]' END) AS lora"
            " WHERE lora ->> 'name' ILIKE %(lora)s ESCAPE '\\')"
        )
    if query.container is not None:
        params["container"] = text(query.container)
        where.append("container = %(container)s")
    if query.since_s is not None:
        params["since"] = since(now, query.since_s)
        where.append("mtime >= %(since)s")
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
