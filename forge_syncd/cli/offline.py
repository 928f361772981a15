"""When forge-syncd is not running: `history` and `find` read its state files themselves,
read-only (nothing is created, migrated or locked), and say that they did.

The manifest is `<state_dir>/manifest.sqlite` (state_dir from the config, else the
default), read as whatever schema version it has; the catalog is the config's first
`catalog` sink (an SQLite file) or `postgres` sink (its DSN, in a read-only session).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from forge_syncd.cli.connect import config_document

RUN_FIELDS = (
    "run_id",
    "container",
    "job",
    "started_at",
    "finished_at",
    "result",
    "files",
    "bytes",
    "error",
)


def not_running(why: str) -> str:
    """Given why the daemon could not be reached, return it short: "/run/forge-sync/
    control.sock: No such file or directory"."""
    return why.removeprefix("cannot reach forge-syncd at ")


class StateUnreadable(Exception):
    """A state file that is not there or cannot be read; the message says which and why."""


def open_readonly(path: Path) -> tuple[sqlite3.Connection, str]:
    """Open the SQLite database at `path` read-only; return it and a remark ("" or why its
    newest changes may be missing). A database in WAL mode that this user may read but not
    give a `-shm` file (the daemon's files, read by an operator: SQLite then refuses even a
    read-only open) is read as its main file holds it: complete after the daemon stopped
    cleanly, else without what its `-wal` file still holds. Raise StateUnreadable."""
    if not path.is_file():
        raise StateUnreadable(f"no {path} (has forge-syncd ever run with this state_dir?)")
    uri = path.absolute().as_uri()
    wal = Path(f"{path}-wal")
    unlogged = wal.exists() and wal.stat().st_size > 0
    missing = " (without its write-ahead log: the newest entries may be missing)"
    for mode, remark in (("mode=ro", ""), ("immutable=1", missing if unlogged else "")):
        try:
            db = sqlite3.connect(f"{uri}?{mode}", uri=True, timeout=5)
            db.execute("PRAGMA query_only = 1")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db, remark
        except sqlite3.Error as exc:
            error = exc
    raise StateUnreadable(f"cannot read {path}: {error}")


def history_runs(path: Path, name: str | None, limit: int) -> tuple[list[dict[str, Any]], str]:
    """Return the runs the manifest at `path` records (newest first, at most `limit`, only
    `name`'s when given) as `history` answers them, and a remark. Raise StateUnreadable."""
    db, remark = open_readonly(path)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        extra = [f"{c}" if c in columns else f"NULL AS {c}" for c in ("trigger", "dry_run")]
        select = ", ".join((*RUN_FIELDS, *extra))
        where = " WHERE container = ?" if name is not None else ""
        args: tuple[Any, ...] = (name,) if name is not None else ()
        rows = db.execute(
            f"SELECT {select} FROM runs{where} ORDER BY started_at DESC LIMIT ?",  # noqa: S608
            (*args, limit),
        ).fetchall()
        known = {str(row[0]) for row in db.execute("SELECT DISTINCT container FROM runs")}
    except sqlite3.Error as exc:
        why = f"cannot read the runs in {path}: {exc}"
        if remark:  # all of it may still be in the write-ahead log
            why += " (it is in its write-ahead log: read it as root or the daemon's user)"
        raise StateUnreadable(why) from None
    finally:
        db.close()
    if name is not None and name not in known:
        from forge_syncd.text import no_such

        raise LookupError(no_such("container", name, known))
    runs = [dict(zip((*RUN_FIELDS, "trigger", "dry_run"), row, strict=True)) for row in rows]
    for run in runs:
        run["dry_run"] = bool(run["dry_run"])
    return runs, remark


def catalog_sink(config: Path) -> dict[str, Any]:
    """Return the config's first sink that keeps a catalog (`catalog` or `postgres`), as
    written. Raise StateUnreadable if the config cannot be read or has none."""
    document, problem = config_document(config)
    if document is None:
        raise StateUnreadable(f"cannot read {config}: {problem}")
    for sink in document.get("ingest") or []:
        if isinstance(sink, dict) and sink.get("type") in ("catalog", "postgres"):
            return sink
    raise StateUnreadable(f"no catalog: {config} has no catalog or postgres sink")


def find_rows(sink: dict[str, Any], params: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Search the catalog of `sink` with `find` params; return the rows and where they
    came from. Raise ValueError (bad params), StateUnreadable."""
    from forge_syncd.catalog.query import query_from_params

    query = query_from_params(params)
    if sink.get("type") == "postgres":
        return _find_postgres(str(sink.get("dsn")), query), "the postgres sink's database"
    path = Path(str(sink.get("path")))
    db, remark = open_readonly(path)
    try:
        from forge_syncd.catalog.sqlite_search import search_rows

        return search_rows(db, query), f"{path}{remark}"
    except sqlite3.Error as exc:
        raise StateUnreadable(f"cannot search {path}: {exc}") from None
    finally:
        db.close()


def _find_postgres(dsn: str, query: Any) -> list[dict[str, Any]]:
    """The search in a read-only session (nothing is created or migrated)."""
    import psycopg

    from forge_syncd.catalog.postgres_search import search_rows
    from forge_syncd.events.sinks.postgres_link import SEARCH_TIMEOUT_S, database_name

    try:
        with psycopg.connect(
            dsn,
            connect_timeout=SEARCH_TIMEOUT_S,
            options=f"-c default_transaction_read_only=on -c statement_timeout={SEARCH_TIMEOUT_S}s",
            application_name="forge-syncctl",
        ) as conn:
            return search_rows(conn, query)
    except psycopg.Error as exc:
        raise StateUnreadable(f"cannot search {database_name(dsn)}: {exc}") from None
