"""The catalog schema (`forge_syncd/catalog/schema.py`) is what the PostgreSQL migrations
make, against a real PostgreSQL: from an empty database and from the dump of a database the
round-2 sink made (tests/fixtures/postgres-v2.sql, from tag b26-base: tests/fixtures/README.md),
whose rows this code then finds as they were written."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from forge_syncd.catalog import schema
from forge_syncd.catalog.dialect import POSTGRES
from forge_syncd.catalog.postgres_migrations import MIGRATIONS, migrate
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.events.sinks.postgres import PostgresSink
from tests.support.postgres import PostgresServer, served
from tests.unit.test_catalog_schema import assert_round_2_rows_found

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NUMBERS = itertools.count()
# Each column with its type in PostgreSQL's own words, and whether it is NOT NULL.
COLUMNS = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a"
    " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
)
INDEXES = (
    "SELECT i.relname, array_agg(a.attname::text) FROM pg_index x"
    " JOIN pg_class i ON i.oid = x.indexrelid"
    " LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)"
    " WHERE x.indrelid = 'media'::regclass AND NOT x.indisprimary GROUP BY i.relname"
)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for this module's tests (each gets a database of its own)."""
    yield from served()


def database(server: PostgresServer, dump: str | None) -> str:
    """A new database (owned by `forge`), loaded from a dump in tests/fixtures if given,
    then migrated by this code; its DSN."""
    name = f"schema_{next(NUMBERS)}"
    dsn = server.create_database(name)
    if dump is not None:
        server.load_dump(name, FIXTURES / dump)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


def expected_columns(conn: psycopg.Connection[object]) -> dict[str, tuple[str, bool]]:
    """schema.COLUMNS and PostgreSQL's own, typed by dialect.POSTGRES, as PostgreSQL words
    them (a scratch table made from the dialect's type names)."""
    typed = [(c.name, POSTGRES.type_of(c), c.required) for c in schema.COLUMNS]
    typed += [(name, kind, False) for name, kind in POSTGRES.own_columns.items()]
    body = ", ".join(
        f"{name} {kind}{' NOT NULL' if required else ''}" for name, kind, required in typed
    )
    conn.execute(f"CREATE TEMPORARY TABLE expected ({body})")
    return {name: (kind, notnull) for name, kind, notnull in conn.execute(COLUMNS, ("expected",))}


@pytest.mark.parametrize("dump", [None, "postgres-v2.sql"])
def test_migrations_make_the_schema(pg_server: PostgresServer, dump: str | None) -> None:
    """After migrating, `media` has exactly schema.COLUMNS in POSTGRES's types (NOT NULL
    where required; `id` is the primary key) and PostgreSQL's own columns; the full-text
    column covers FTS_FIELDS; every index of schema.INDEXES is there, on its columns, beside
    PostgreSQL's own; the version is the last."""
    dsn = database(pg_server, dump)
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = {name: (kind, notnull) for name, kind, notnull in conn.execute(COLUMNS, ("media",))}
        expected = expected_columns(conn)
        expected["id"] = (expected["id"][0], True)
        assert found == expected
        generated = conn.execute(
            "SELECT generation_expression FROM information_schema.columns"
            " WHERE table_name = 'media' AND column_name = 'search'"
        ).fetchone()
        assert generated is not None
        assert all(field in generated[0] for field in schema.FTS_FIELDS)
        indexes = {name: set(on) for name, on in conn.execute(INDEXES)}
        assert set(indexes) == {i.name for i in schema.INDEXES} | set(POSTGRES.own_indexes)
        for index in schema.INDEXES:
            assert set(index.columns) <= indexes[index.name]
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert version == (len(MIGRATIONS),)


def test_round_2_database_is_read_as_it_was_written(pg_server: PostgresServer) -> None:
    """The database b26-base's sink wrote (a seed past 2^63 as NUMERIC, a non-UTF-8 path in
    `local_path_bytes`) is searched by this code and its rows come back as they were
    written; a new event updates it as it would a new database."""
    sink = PostgresSink("postgres", {"dsn": database(pg_server, "postgres-v2.sql")})
    try:
        assert_round_2_rows_found(sink)
        sink.deliver(
            {
                "type": "file_purged",
                "container": "forge-a",
                "path": "castle.png",
                "purged_at": "2026-12-01T00:00:00.000000Z",
            }
        )
        castle = sink.find(CatalogQuery(prompt="castle"))
        assert [r["purged_at"] for r in castle] == ["2026-12-01T00:00:00.000000Z"]
    finally:
        sink.close()


def test_duplicate_of_is_kept_by_postgresql(pg_server: PostgresServer) -> None:
    """`duplicate_of` (issue 29) in PostgreSQL, as in SQLite: rows with one sha256 and size
    name the first of them; new bytes under the first name hand its place to the next, as
    does a deleted first row (the trigger of the last migration)."""
    from tests.unit.test_catalog_duplicates import OTHER, SAME, synced

    dsn = database(pg_server, None)
    sink = PostgresSink("postgres", {"dsn": dsn})
    try:
        for name in ("one.png", "two.png", "three.png"):
            sink.deliver(synced("a", name, SAME))
        sink.deliver(synced("a", "other.png", OTHER))

        def pointers() -> dict[str, str | None]:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return dict(
                    conn.execute(
                        "SELECT m.path, o.path FROM media m LEFT JOIN media o"
                        " ON o.id = m.duplicate_of"
                    ).fetchall()
                )

        assert pointers() == {
            "one.png": None,
            "two.png": "one.png",
            "three.png": "one.png",
            "other.png": None,
        }
        sink.deliver(synced("a", "one.png", OTHER))
        assert pointers() == {
            "one.png": None,
            "two.png": None,
            "three.png": "two.png",
            "other.png": "one.png",
        }
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM media WHERE path = 'two.png'")
        assert pointers()["three.png"] is None
    finally:
        sink.close()
