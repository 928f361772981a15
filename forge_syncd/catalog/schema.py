"""The catalog's columns: one list that both sinks and both searches read.

The table `media` holds one row per synced file version (SPEC "Catalog"). Every column is
listed once in COLUMNS, in the order `find` returns the ones it returns (FOUND_KEYS). A
column's `kind` says what it holds; each database's `Dialect` (`catalog/dialect.py`) names
its type and converts values to it. The migrations (`sqlite_migrations.py`,
`postgres_migrations.py`) are frozen history that must make exactly this schema (a test
checks that, from an empty database and from the databases rounds 1 and 2 made).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a column holds (each dialect names its type and converts values to it)."""

    TEXT = "text"
    INT = "int"  # a count that fits 32 bits (steps, width, height)
    BIGINT = "bigint"  # a byte count
    SEED = "seed"  # an integer up to 2^64 - 1 (ComfyUI seeds), kept exactly
    REAL = "real"
    JSON = "json"  # lists of objects (LoRAs, samplers)
    TIME = "time"  # ISO 8601 UTC (the events' format)


class Role(StrEnum):
    """Who writes a column."""

    KEY = "key"  # which file of which container: (container, path)
    FILE = "file"  # the library copy this row describes, from the event
    STATE = "state"  # what happened to it since: purged on the container, moved to .versions/
    METADATA = "metadata"  # read from the file itself: a field of GenerationInfo


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    role: Role
    required: bool = False  # NOT NULL
    found: bool = False  # returned by `find`
    fts: bool = False  # searched as full text by `find --prompt`


@dataclass(frozen=True)
class Index:
    """An index both databases keep, by name, on (at least) these columns."""

    name: str
    columns: tuple[str, ...]


COLUMNS = (
    Column("container", Kind.TEXT, Role.KEY, required=True, found=True),
    Column("path", Kind.TEXT, Role.KEY, required=True, found=True),
    Column("local_path", Kind.TEXT, Role.FILE, required=True, found=True),
    Column("size", Kind.BIGINT, Role.FILE, required=True, found=True),
    Column("mtime", Kind.TIME, Role.FILE, required=True, found=True),
    Column("sha256", Kind.TEXT, Role.FILE),
    Column("generator", Kind.TEXT, Role.METADATA, found=True),  # a1111 | comfyui | invokeai | ...
    Column("prompt", Kind.TEXT, Role.METADATA, found=True, fts=True),
    Column("negative_prompt", Kind.TEXT, Role.METADATA, found=True, fts=True),
    Column("seed", Kind.SEED, Role.METADATA, found=True),
    Column("steps", Kind.INT, Role.METADATA, found=True),
    Column("sampler", Kind.TEXT, Role.METADATA, found=True),
    Column("cfg_scale", Kind.REAL, Role.METADATA, found=True),
    Column("model", Kind.TEXT, Role.METADATA, found=True),
    Column("loras", Kind.JSON, Role.METADATA, found=True),  # [{"name": ..., "weight": ...}, ...]
    Column("width", Kind.INT, Role.METADATA, found=True),
    Column("height", Kind.INT, Role.METADATA, found=True),
    Column("vae", Kind.TEXT, Role.METADATA),
    Column("scheduler", Kind.TEXT, Role.METADATA),
    Column("denoise", Kind.REAL, Role.METADATA),
    Column("samplers", Kind.JSON, Role.METADATA),  # every sampler of a ComfyUI graph
    Column("duration_s", Kind.REAL, Role.METADATA, found=True),
    Column("frame_rate", Kind.REAL, Role.METADATA),
    Column("metadata_json", Kind.TEXT, Role.METADATA),  # the texts it was read from
    Column("metadata_error", Kind.TEXT, Role.METADATA),  # what was not read, or not kept
    Column("versioned_at", Kind.TIME, Role.STATE, found=True),
    Column("purged_at", Kind.TIME, Role.STATE, found=True),
    # The id of the first row with the same bytes (sha256 and size; kept by the database's
    # triggers), else NULL: the gallery hides duplicates with it (`duplicates=hide`).
    Column("duplicate_of", Kind.BIGINT, Role.STATE),
)
BY_NAME = {column.name: column for column in COLUMNS}
METADATA_ERROR = "metadata_error"  # the last metadata column


def names(role: Role) -> tuple[str, ...]:
    """Return the names of the columns of one role, in COLUMNS order."""
    return tuple(column.name for column in COLUMNS if column.role is role)


KEY = names(Role.KEY)
FILE = names(Role.FILE)
METADATA = names(Role.METADATA)
# What `find` returns for each file (JSON-able values; `loras` decoded).
FOUND_KEYS = tuple(column.name for column in COLUMNS if column.found)
FTS_FIELDS = tuple(column.name for column in COLUMNS if column.fts)
INDEXES = (
    Index("media_current", ("container", "path")),  # unique, of rows not versioned
    Index("media_by_local_path", ("local_path",)),
    Index("media_by_container", ("container", "mtime")),
    Index("media_by_seed", ("seed",)),
    Index("media_by_model", ("model",)),
    # The gallery (round 3): a thumbnail by content, facet counts and filters in mtime order.
    Index("media_by_sha256", ("sha256",)),
    Index("media_by_generator", ("generator", "mtime")),
    Index("media_by_sampler", ("sampler", "mtime")),
    Index("media_by_size", ("width", "height", "mtime")),
    Index("media_duplicates", ("duplicate_of",)),  # of duplicates only
)
