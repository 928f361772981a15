"""How SQLite and PostgreSQL differ in keeping the catalog: one `Dialect` each.

A dialect names each column kind's type, and the columns and indexes only that database
has: SQLite keeps a non-UTF-8 path as a BLOB in `local_path` and searches through the
full-text table `media_text` and `media_loras` (kept by triggers) and a covering index;
PostgreSQL keeps such a path in `local_path_bytes` beside its display form, and searches a
generated tsvector `search` and a GIN index over `loras`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from forge_syncd.catalog.schema import Column, Kind


@dataclass(frozen=True)
class Dialect:
    name: str
    types: Mapping[Kind, str]
    own_columns: Mapping[str, str]  # name: type, of columns of this database alone
    own_indexes: tuple[str, ...]  # of `media`, besides schema.INDEXES

    def type_of(self, column: Column) -> str:
        """Return the column's type as this database declares it (without NOT NULL)."""
        return self.types[column.kind]


SQLITE = Dialect(
    name="sqlite",
    types={
        Kind.TEXT: "TEXT",
        Kind.INT: "INTEGER",
        Kind.BIGINT: "INTEGER",
        # No type: past 2^63 - 1 (SQLite's INTEGER) a seed is kept exactly, as text.
        Kind.SEED: "",
        Kind.REAL: "REAL",
        Kind.JSON: "TEXT",
        Kind.TIME: "TEXT",
    },
    own_columns={"id": "INTEGER"},
    own_indexes=("media_find",),
)
POSTGRES = Dialect(
    name="postgres",
    types={
        Kind.TEXT: "TEXT",
        Kind.INT: "INTEGER",
        Kind.BIGINT: "BIGINT",
        Kind.SEED: "NUMERIC(20, 0)",
        Kind.REAL: "DOUBLE PRECISION",
        Kind.JSON: "JSONB",
        Kind.TIME: "TIMESTAMPTZ",
    },
    own_columns={"id": "BIGINT", "search": "tsvector", "local_path_bytes": "BYTEA"},
    own_indexes=("media_by_mtime", "media_by_loras", "media_search"),
)
