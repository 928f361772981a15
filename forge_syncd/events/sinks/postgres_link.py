"""A kept connection to the postgres sink's database (`Link`), and the client settings
deliveries and searches connect with.

A connection found dead (the server restarted, an idle timeout) is replaced and the work
tried once more; a new connection first brings the schema up to date
(`catalog/postgres_migrations.py`). A search connection bounds every statement with
`statement_timeout`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from forge_syncd.catalog.postgres_migrations import migrate

T = TypeVar("T")

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
