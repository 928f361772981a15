"""How SQLite and PostgreSQL differ in keeping the catalog: one `Dialect` each.

A dialect names each column kind's type, converts a value to it, and lists the columns and
indexes only that database has: SQLite keeps a non-UTF-8 path as a BLOB in `local_path` and
searches through the full-text table `media_text`, `media_loras` (kept by triggers) and a
covering index; PostgreSQL keeps such a path in `local_path_bytes` beside its display form,
and searches a generated tsvector `search` and a GIN index over `loras`.

Values come from the metadata readers (any object with GenerationInfo's fields: this
package never imports `events/`); a field an object lacks is NULL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from forge_syncd.catalog.schema import COLUMNS, METADATA_ERROR, Column, Kind, Role

# Each kind's type: (SQLite, PostgreSQL).
TYPES = {
    Kind.TEXT: ("TEXT", "TEXT"),
    Kind.INT: ("INTEGER", "INTEGER"),
    Kind.BIGINT: ("INTEGER", "BIGINT"),
    # No type in SQLite: past 2^63 - 1 (its INTEGER) a seed is kept exactly, as text.
    Kind.SEED: ("", "NUMERIC(20, 0)"),
    Kind.REAL: ("REAL", "DOUBLE PRECISION"),
    Kind.JSON: ("TEXT", "JSONB"),
    Kind.TIME: ("TEXT", "TIMESTAMPTZ"),
}
# The metadata columns read from a file; metadata_error, written last, also names what was
# dropped.
READ = tuple(c for c in COLUMNS if c.role is Role.METADATA and c.name != METADATA_ERROR)
INT32 = range(-(2**31), 2**31)
INT64 = range(-(2**63), 2**63)
NUMERIC_20 = range(-(10**20) + 1, 10**20)
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Dialect:
    name: str
    types: Mapping[Kind, str]
    convert: Callable[[Kind, object], object]  # a value to its column's kind, or None
    own_columns: Mapping[str, str]  # name: type, of columns of this database alone
    own_indexes: tuple[str, ...]  # of `media`, besides schema.INDEXES

    def type_of(self, column: Column) -> str:
        """Return the column's type as this database declares it (without NOT NULL)."""
        return self.types[column.kind]

    def metadata_values(self, info: object) -> list[object]:
        """Given a metadata reading, return the values of schema.METADATA in that order,
        each converted to its column. A value that does not fit its column is NULL, and
        metadata_error (last) says so after what the reader could not read."""
        values: list[object] = []
        dropped: list[str] = []
        for column in READ:
            raw = getattr(info, column.name, None)
            value = self.convert(column.kind, raw)
            if raw is not None and value is None:
                dropped.append(f"malformed: {column.name} does not fit {self.type_of(column)}")
            values.append(value)
        problems = [p for p in (getattr(info, METADATA_ERROR, None), *dropped) if p]
        error = "; ".join(str(p) for p in problems) if problems else None
        values.append(self.convert(Kind.TEXT, error))
        return values


# -- SQLite: every value fits; integers past 64 bits and lists become text ---------------------
def sqlite_value(kind: Kind, value: object) -> object:
    """Return `value` as SQLite keeps it: a list (LoRAs, samplers) as JSON text, an integer
    SQLite cannot hold as INTEGER (a ComfyUI seed above 2^63 - 1) as its exact decimal
    text, anything else as it is."""
    if kind is Kind.JSON and value is not None:
        return json.dumps(value, ensure_ascii=False, default=_jsonable)
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return str(value)
    return value


def _jsonable(value: object) -> object:
    """`json.dumps` default: dataclasses as dicts, anything else as its text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


# -- PostgreSQL: what its columns accept, or None ----------------------------------------------
def pg_text(value: object) -> str | None:
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


def _integer(value: object, allowed: range) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value in allowed:
        return value
    return None


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
        return pg_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {pg_text(str(key)): _json_tree(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_tree(item) for item in value]
    return None


def _jsonb(value: object) -> object:
    """Return a JSON column's value (given decoded, or as JSON text) as psycopg's Jsonb."""
    from psycopg.types.json import Jsonb  # only the postgres sink loads psycopg

    if value is None:
        return None
    try:
        if isinstance(value, str | bytes):
            value = json.loads(value)
        return Jsonb(_json_tree(value))
    except (ValueError, RecursionError):
        return None


def postgres_value(kind: Kind, value: object) -> object:
    """Return `value` as its PostgreSQL column takes it, or None if it does not fit."""
    if kind is Kind.TEXT:
        return pg_text(value)
    if kind is Kind.INT:
        return _integer(value, INT32)
    if kind is Kind.BIGINT:
        return _integer(value, INT64)
    if kind is Kind.SEED:
        return _integer(value, NUMERIC_20)
    if kind is Kind.REAL:
        return _double(value)
    if kind is Kind.JSON:
        return _jsonb(value)
    return value  # TIME: ISO 8601 text, as the events give it


SQLITE = Dialect(
    name="sqlite",
    types={kind: sqlite for kind, (sqlite, _) in TYPES.items()},
    convert=sqlite_value,
    own_columns={"id": "INTEGER"},
    own_indexes=("media_find",),
)
POSTGRES = Dialect(
    name="postgres",
    types={kind: postgres for kind, (_, postgres) in TYPES.items()},
    convert=postgres_value,
    own_columns={"id": "BIGINT", "search": "tsvector", "local_path_bytes": "BYTEA"},
    own_indexes=("media_by_mtime", "media_by_loras", "media_search", "media_versions"),
)
