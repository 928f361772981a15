"""The `postgres` sink's pure parts (no database): its columns mirror the SQLite catalog's,
values are made storable (NUL, lone surrogates, numbers past a column, JSON), find's
conditions keep user text out of the SQL, and its config is validated. The sink against
a real PostgreSQL is in tests/e2e/test_postgres.py."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.catalog import postgres_search, schema
from forge_syncd.catalog.dialect import POSTGRES, pg_text
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.schema import FOUND_KEYS
from forge_syncd.config import ConfigError, load_config
from forge_syncd.events.metadata import GenerationInfo

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_text_is_made_storable() -> None:
    """NUL and lone surrogates become U+FFFD; other text is kept; non-strings are None."""
    assert pg_text("a\x00b") == "a\ufffdb"
    assert pg_text("x\ud800y\udfff") == "x\ufffdy\ufffd"
    assert pg_text("Füchse 狐狸 😀") == "Füchse 狐狸 😀"
    assert pg_text(5) is None


@dataclasses.dataclass
class Lora:
    name: str
    weight: float


@dataclasses.dataclass
class Info(GenerationInfo):
    loras: Any = None
    samplers: Any = None
    denoise: Any = None


def values(info: object) -> dict[str, Any]:
    return dict(zip(schema.METADATA, POSTGRES.metadata_values(info), strict=True))


def test_numbers_past_their_column_are_left_out_and_named() -> None:
    """A seed up to 2^64 - 1 is kept; a longer one, steps past INTEGER, a bool where a
    number goes are None, and metadata_error names each (after the reader's own)."""
    got = values(Info(seed=2**64 - 1, steps=20, width=True, metadata_error="malformed: x"))
    assert (got["seed"], got["steps"], got["width"]) == (2**64 - 1, 20, None)
    assert got["metadata_error"] == "malformed: x; malformed: width does not fit INTEGER"
    got = values(Info(seed=10**20, steps=2**31, cfg_scale=10**400))
    assert (got["seed"], got["steps"], got["cfg_scale"]) == (None, None, None)
    assert "seed does not fit NUMERIC(20, 0)" in got["metadata_error"]
    assert "cfg_scale does not fit DOUBLE PRECISION" in got["metadata_error"]
    assert values(Info(seed=-(2**63)))["seed"] == -(2**63)
    assert values(GenerationInfo())["metadata_error"] is None


def test_json_columns_take_objects_text_and_dataclasses() -> None:
    """LoRAs as dataclasses or JSON text become JSON objects; NUL inside strings and
    non-finite numbers are cleaned; text that is not JSON is left out and named."""
    got = values(
        Info(
            loras=[Lora("a\x00b", math.inf)],
            samplers='[{"seed": 18446744073709551615}]',
            denoise=0.5,
        )
    )
    assert got["loras"].obj == [{"name": "a\ufffdb", "weight": None}]
    assert got["samplers"].obj == [{"seed": 2**64 - 1}]
    assert got["denoise"] == 0.5
    bad = values(Info(samplers="[not json", loras=("x", {1: float("nan")})))
    assert bad["samplers"] is None and "samplers does not fit JSONB" in bad["metadata_error"]
    assert bad["loras"].obj == ["x", {"1": None}]


def unescape(pattern: str) -> tuple[str, list[str]]:
    """Read an ILIKE pattern (ESCAPE '\\'); return its literal text and its wildcards."""
    literal, wildcards, chars = "", [], iter(pattern)
    for char in chars:
        if char == "\\":
            literal += next(chars)
        elif char in "%_":
            wildcards.append(char)
        else:
            literal += char
    return literal, wildcards


@given(st.text())
def test_like_pattern_matches_the_text_literally(value: str) -> None:
    """Any text becomes %<text>% with its own %, _ and \\ escaped: no other wildcard."""
    pattern = postgres_search.like_pattern(value)
    literal, wildcards = unescape(pattern[1:-1])
    assert pattern[0] == pattern[-1] == "%"
    assert literal == value and wildcards == []


CONSTANT = st.text() | st.just("'; DROP TABLE media; --") | st.just("%(limit)s")


@given(CONSTANT, CONSTANT, CONSTANT, CONSTANT, st.integers(min_value=-(2**70), max_value=2**70))
def test_find_conditions_keep_user_text_out_of_the_sql(
    prompt: str, model: str, lora: str, container: str, seed: int
) -> None:
    """The WHERE text is the same constants whatever the query holds; user values travel
    only as parameters (cleaned of NUL)."""
    query = CatalogQuery(prompt, model, seed, lora, container, since_s=60.0)
    where, params = postgres_search.find_filters(query, NOW)
    fixed, _ = postgres_search.find_filters(CatalogQuery("p", "m", 1, "l", "c", since_s=1.0), NOW)
    assert where == fixed
    assert params["container"] == pg_text(container)
    assert "\x00" not in params["prompt"] and params["seed"] == seed
    assert params["since"] == datetime(2026, 11, 30, 23, 59, tzinfo=UTC)


def test_no_filter_no_condition() -> None:
    assert postgres_search.find_filters(CatalogQuery(), NOW) == ([], {})


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan, 1e300, -1e300, 0.0])
def test_since_stays_within_datetime(seconds: float) -> None:
    """Any since_s gives a cutoff Python and PostgreSQL can hold, never after now (NaN:
    no limit)."""
    cutoff = postgres_search.since(NOW, seconds)
    assert datetime(1, 1, 1, tzinfo=UTC) < cutoff <= NOW
    assert (cutoff == NOW) == (seconds <= 0)


def test_found_rows_are_json_values() -> None:
    """Times become ISO 8601 UTC with Z, NUMERIC seeds ints, in FOUND_KEYS order."""
    from decimal import Decimal

    row = dict.fromkeys(FOUND_KEYS)
    row["mtime"] = datetime(2026, 12, 1, 1, 2, 3, 4, tzinfo=UTC)
    row["seed"] = Decimal(2**64 - 1)
    found = postgres_search.found_row(row)
    assert tuple(found) == FOUND_KEYS
    assert found["mtime"] == "2026-12-01T01:02:03.000004Z" and found["seed"] == 2**64 - 1


def config(tmp_path: Path, sink: str) -> Path:
    key = tmp_path / "id"
    key.write_text("x")
    key.chmod(0o600)
    path = tmp_path / "forge-sync.yaml"
    path.write_text(
        f"media_root: /m\ndefaults:\n  ssh: {{identity_file: {key}}}\ncontainers:\n"
        f"  - {{name: a, kind: comfyui, host: h}}\ningest:\n  - {sink}\n"
    )
    return path


def test_config_takes_a_postgres_sink_with_a_dsn(tmp_path: Path) -> None:
    """type postgres is a sink type; its dsn is required and kept as given."""
    dsn = "postgresql://forge@db.example:5433/media?sslmode=require"
    loaded = load_config(config(tmp_path, f"{{name: shared, type: postgres, dsn: '{dsn}'}}"))
    assert (loaded.ingest[0].type, loaded.ingest[0].options) == ("postgres", {"dsn": dsn})
    path = config(tmp_path, "{name: shared, type: postgres}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:7: ingest[0].dsn: required key is missing" in str(caught.value)
    path = config(tmp_path, "{name: shared, type: postgres, dsn: x, path: /y}")
    with pytest.raises(ConfigError, match=r"ingest\[0\]\.path: unknown key"):
        load_config(path)
