"""The catalog schema (`forge_syncd/catalog/schema.py`) is what the SQLite migrations make:
from an empty file, from the round-1 fixture (tests/fixtures/catalog-v0.sqlite) and from the
round-2 one (catalog-v2.sqlite, made by tag b26-base: tests/fixtures/README.md). The same
for PostgreSQL is in tests/e2e/test_postgres_schema.py."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from forge_syncd.catalog import schema
from forge_syncd.catalog.dialect import POSTGRES, SQLITE, Dialect
from forge_syncd.catalog.query import CatalogQuery, Searchable
from forge_syncd.catalog.schema import Kind, Role
from forge_syncd.catalog.sqlite_migrations import MIGRATIONS, migrate
from forge_syncd.events.formats.common import GenerationInfo
from forge_syncd.events.sinks.catalog import CatalogSink

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def migrated(tmp_path: Path, fixture: str | None) -> Path:
    """A copy of the fixture (or a new file), migrated by the catalog sink."""
    path = tmp_path / "catalog.sqlite"
    if fixture is not None:
        shutil.copy(FIXTURES / fixture, path)
    CatalogSink("catalog", {"path": path}).close()
    return path


@pytest.mark.parametrize("fixture", [None, "catalog-v0.sqlite", "catalog-v2.sqlite"])
def test_migrations_make_the_schema(tmp_path: Path, fixture: str | None) -> None:
    """After migrating, `media` has exactly schema.COLUMNS (SQLite's types, NOT NULL where
    required) and SQLite's own `id`; the full-text table covers FTS_FIELDS; every index of
    schema.INDEXES is there, on its columns, beside SQLite's own; the version is the last."""
    db = sqlite3.connect(migrated(tmp_path, fixture))
    columns = {row[1]: (row[2], bool(row[3])) for row in db.execute("PRAGMA table_info(media)")}
    expected = {c.name: (SQLITE.type_of(c), c.required) for c in schema.COLUMNS}
    assert columns == {"id": ("INTEGER", False)} | expected
    assert set(SQLITE.own_columns) == {"id"}
    fts = [row[1] for row in db.execute("PRAGMA table_info(media_text)")]
    assert tuple(fts) == schema.FTS_FIELDS
    indexes = {row[1] for row in db.execute("PRAGMA index_list(media)")}
    assert indexes == {i.name for i in schema.INDEXES} | set(SQLITE.own_indexes)
    for index in schema.INDEXES:
        on = [row[2] for row in db.execute(f"PRAGMA index_info({index.name})")]
        assert set(index.columns) <= set(on)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()


def assert_round_2_rows_found(sink: Searchable) -> None:
    """The rows tests/fixtures/make_catalog_v2.py wrote are found as written: a seed past
    2^63 an int, LoRAs decoded, a non-UTF-8 path with surrogate escapes, the versioned and
    the purged rows (shared with tests/e2e/test_postgres_schema.py)."""
    castle = sink.find(CatalogQuery(prompt="castle"))
    assert [(r["path"], r["seed"]) for r in castle] == [("castle.png", 2**64 - 2)]
    assert [lora["name"] for lora in castle[0]["loras"]] == ["castleLora", "detailTweaker"]
    fox = sink.find(CatalogQuery(lora="snow"))
    assert [r["local_path"] for r in fox] == ["/srv/forge-media/forge-a/caf\udce9.png"]
    both = sink.find(CatalogQuery(container="forge-a", model="e"))
    versions = [(r["path"], r["versioned_at"]) for r in both if r["path"].startswith("por")]
    assert versions == [
        ("portraits/a.png", None),
        ("portraits/a.png", "2026-11-02T09:00:00.000000Z"),
    ]
    purged = sink.find(CatalogQuery(container="comfy-1", lora="pixel"))
    assert [r["purged_at"] for r in purged] == ["2026-11-05T00:00:00.000000Z"]


def test_round_2_catalog_is_read_as_it_was_written(tmp_path: Path) -> None:
    """The catalog b26-base wrote (a seed past 2^63 kept as text, a non-UTF-8 path as a
    BLOB) is searched by this code and its rows come back as they were written."""
    sink = CatalogSink("catalog", {"path": migrated(tmp_path, "catalog-v2.sqlite")})
    try:
        assert_round_2_rows_found(sink)
    finally:
        sink.close()


def test_a_newer_catalog_is_refused(tmp_path: Path) -> None:
    """A catalog at a schema version past this code's is refused, saying so, and left
    unchanged."""
    path = tmp_path / "catalog.sqlite"
    shutil.copy(FIXTURES / "catalog-v2.sqlite", path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this forge-syncd"):
        migrate(db)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) + 1
    db.close()


def test_metadata_columns_are_generation_info_fields() -> None:
    """The metadata columns are exactly the fields the metadata readers fill: a field
    added to GenerationInfo without a column (or the other way) fails here."""
    fields = {field.name for field in dataclasses.fields(GenerationInfo)}
    assert set(schema.METADATA) == fields
    assert len(schema.METADATA) == len(fields)


def test_found_keys_are_columns_in_find_order() -> None:
    """`find` returns columns only, in the order its rows have always had."""
    assert schema.FOUND_KEYS == (
        "container", "path", "local_path", "size", "mtime", "generator", "prompt",
        "negative_prompt", "seed", "steps", "sampler", "cfg_scale", "model", "loras", "width",
        "height", "duration_s", "versioned_at", "purged_at",
    )  # fmt: skip
    assert len(set(schema.BY_NAME)) == len(schema.COLUMNS)


SAMPLES = {
    Kind.TEXT: "a red fox",
    Kind.INT: 30,
    Kind.BIGINT: 2**40,
    Kind.SEED: 2**64 - 1,
    Kind.REAL: 6.5,
    Kind.JSON: [{"name": "foxy", "weight": 0.7}],
    Kind.TIME: "2026-11-01T00:00:00.000000Z",
}


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_each_dialect_types_and_keeps_every_kind(dialect: Dialect) -> None:
    """Each dialect has a type for every kind, and a reading with a value of its kind in
    every metadata field gives one value per schema.METADATA column, none dropped; a
    value that does not fit (a seed past NUMERIC(20, 0)) is NULL only where the database
    cannot hold it, and metadata_error says so."""
    assert set(dialect.types) == set(Kind)
    fields = {c.name: SAMPLES[c.kind] for c in schema.COLUMNS if c.role is Role.METADATA}
    values = dialect.metadata_values(SimpleNamespace(**fields | {"metadata_error": None}))
    assert len(values) == len(schema.METADATA) and values[-1] is None
    assert all(value is not None for value in values[:-1])
    huge = dialect.metadata_values(SimpleNamespace(seed=10**30, metadata_error="cut short"))
    by_name = dict(zip(schema.METADATA, huge, strict=True))
    if dialect is SQLITE:
        assert (by_name["seed"], by_name["metadata_error"]) == (str(10**30), "cut short")
    else:
        assert by_name["seed"] is None
        assert by_name["metadata_error"] == "cut short; malformed: seed does not fit NUMERIC(20, 0)"
