"""The `postgres` sink against a real PostgreSQL (Debian's, started in a scratch folder):
the catalog's rows (synced, versioned, purged, redelivered), metadata of real and hostile
files, `find` with every filter and hostile input, migrations raced, a database that goes
down and comes back, and two real forge-syncd daemons feeding one database."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import signal
import sqlite3
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from bench.catalog import RowMaker
from bench.gallery_catalog import COLUMNS as BENCH_COLUMNS
from forge_syncd.catalog.dialect import POSTGRES
from forge_syncd.catalog.postgres_migrations import MIGRATIONS, migrate
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.schema import FOUND_KEYS, Kind
from forge_syncd.events.metadata import GenerationInfo
from forge_syncd.events.sinks import postgres
from forge_syncd.events.sinks.postgres import PostgresSink
from tests.support.cli import BIN, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.postgres import PostgresServer, missing_reason
from tests.support.sshd import SshdServer
from tests.support.trees import REAL_MEDIA, write_file

pytestmark = pytest.mark.slow
NUMBERS = itertools.count()


# -- fixtures -----------------------------------------------------------------------------------
def new_server() -> PostgresServer:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return PostgresServer().start()


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for this module's tests (each gets a database of its own)."""
    server = new_server()
    yield server
    server.destroy()


@pytest.fixture
def pg_dsn(pg_server: PostgresServer) -> str:
    """A fresh, empty database owned by role `forge`; its DSN (TCP, password)."""
    return pg_server.create_database(f"media_{next(NUMBERS)}")


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, to stop and start."""
    server = new_server()
    yield server
    server.destroy()


# -- helpers ------------------------------------------------------------------------------------
def rows(dsn: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM media ORDER BY id").fetchall()


def png(*chunks: tuple[bytes, bytes]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )
    return out


def infotext_png(path: Path, parameters: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png((b"tEXt", b"parameters\0" + parameters.encode("latin-1"))))
    return path


def comfy_png(path: Path, seed: int) -> Path:
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 20, "cfg": 7}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png((b"tEXt", b"prompt\0" + json.dumps(graph).encode())))
    return path


def synced(path: Path, name: str, container: str = "comfy-1", **more: Any) -> dict[str, Any]:
    event = {
        "id": next(NUMBERS),
        "type": "file_synced",
        "container": container,
        "path": name,
        "local_path": str(path),
        "size": path.stat().st_size if path.exists() else 0,
        "mtime": "2026-12-01T00:00:00.000000Z",
        "sha256": None,
    }
    return {**event, **more}


def versioned(event: dict[str, Any], version_path: Path, when: str) -> dict[str, Any]:
    return {
        **event,
        "id": next(NUMBERS),
        "type": "file_versioned",
        "local_path": str(version_path),
        "previous_local_path": event["local_path"],
        "versioned_at": when,
    }


def purged(event: dict[str, Any], when: str) -> dict[str, Any]:
    return {
        "id": next(NUMBERS),
        "type": "file_purged",
        "container": event["container"],
        "path": event["path"],
        "size": event["size"],
        "purged_at": when,
    }


def deliver(dsn: str, *events: dict[str, Any]) -> None:
    sink = PostgresSink("shared", {"dsn": dsn})
    try:
        for event in events:
            sink.deliver(event)
    finally:
        sink.close()


def find(dsn: str, **query: Any) -> list[dict[str, Any]]:
    sink = PostgresSink("shared", {"dsn": dsn})
    try:
        return sink.find(CatalogQuery(**query))
    finally:
        sink.close()


# -- the catalog's rows -------------------------------------------------------------------------
def test_rows_follow_synced_versioned_and_purged_and_redelivery_changes_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A synced file gets its current row; file_versioned moves that row to the version
    file; the next file at the path gets a new current row; file_purged fills purged_at.
    Delivering every event twice in a row, then the whole history again (a crash before
    the cursor moved), leaves exactly the same rows."""
    library = tmp_path / "media" / "comfy-1"
    first = synced(
        infotext_png(library / "out/a.png", "a red fox\nSteps: 20, Seed: 7"), "out/a.png"
    )
    deliver(pg_dsn, first)
    (row,) = rows(pg_dsn)
    assert (row["path"], row["prompt"], row["seed"], row["versioned_at"]) == (
        "out/a.png",
        "a red fox",
        7,
        None,
    )
    version_file = library / ".versions/out/a.1.png"
    version_file.parent.mkdir(parents=True)
    (library / "out/a.png").rename(version_file)
    moved = versioned(first, version_file, "2026-12-02T00:00:00.000000Z")
    second = synced(
        infotext_png(library / "out/a.png", "a blue cat\nSteps: 30, Seed: 8"),
        "out/a.png",
        mtime="2026-12-03T00:00:00.000000Z",
    )
    gone = purged(second, "2026-12-04T00:00:00.000000Z")
    history = (first, moved, second, gone)
    deliver(pg_dsn, moved, second, gone)
    old, new = rows(pg_dsn)
    assert old["id"] == row["id"] and old["local_path"] == str(version_file)
    assert old["prompt"] == "a red fox" and old["purged_at"] is None
    assert old["versioned_at"] == datetime(2026, 12, 2, tzinfo=UTC)
    assert (new["prompt"], new["seed"], new["versioned_at"]) == ("a blue cat", 8, None)
    assert new["purged_at"] == datetime(2026, 12, 4, tzinfo=UTC)
    assert new["mtime"] == datetime(2026, 12, 3, tzinfo=UTC)

    once = rows(pg_dsn)
    deliver(pg_dsn, *[e for event in history for e in (event, event)])
    assert rows(pg_dsn) == once
    deliver(pg_dsn, *history)
    assert rows(pg_dsn) == once


def test_a_pruned_version_drops_only_its_own_row(pg_dsn: str, tmp_path: Path) -> None:
    """`version_pruned` (keep_versions deleted the version's file) drops that version's row,
    not the current file's; delivered twice, nothing more changes."""
    library = tmp_path / "media" / "comfy-1"
    first = synced(infotext_png(library / "b.png", "first\nSteps: 20, Seed: 1"), "b.png")
    version_file = library / ".versions/b.1.png"
    version_file.parent.mkdir(parents=True)
    (library / "b.png").rename(version_file)
    moved = versioned(first, version_file, "2026-12-02T00:00:00.000000Z")
    second = synced(
        infotext_png(library / "b.png", "second\nSteps: 20, Seed: 2"),
        "b.png",
        mtime="2026-12-03T00:00:00.000000Z",
    )
    pruned = {
        "id": next(NUMBERS),
        "type": "version_pruned",
        "container": first["container"],
        "path": "b.png",
        "version_path": ".versions/b.1.png",
        "local_path": str(version_file),
        "size": first["size"],
    }
    deliver(pg_dsn, first, moved, second)
    assert len(rows(pg_dsn)) == 2
    deliver(pg_dsn, pruned, pruned)
    (left,) = rows(pg_dsn)
    assert (left["prompt"], left["versioned_at"]) == ("second", None)


def test_a_version_without_a_row_gets_one_from_the_version_file(
    pg_dsn: str, tmp_path: Path
) -> None:
    """file_versioned for a path the database never saw (the sink added later) makes a
    versioned row with the version file's metadata; delivered again, nothing changes."""
    version_file = infotext_png(tmp_path / ".versions/b.1.png", "an owl\nSteps: 5, Seed: 99")
    event = versioned(
        synced(version_file, "b.png", container="forge-a"),
        version_file,
        "2026-12-05T00:00:00.000000Z",
    )
    deliver(pg_dsn, event, event)
    (row,) = rows(pg_dsn)
    assert (row["path"], row["prompt"], row["seed"]) == ("b.png", "an owl", 99)
    assert row["versioned_at"] == datetime(2026, 12, 5, tzinfo=UTC)


def test_a_backfilled_old_version_gets_its_own_row_not_the_current_files(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A backfill replays the current file first, then an older version of the same path
    (other size and mtime): the current row stays the current file's, and the version gets
    a row of its own made from the version file (as the SQLite catalog does)."""
    current = infotext_png(tmp_path / "c.png", "a new fox\nSteps: 5, Seed: 2")
    old = infotext_png(
        tmp_path / ".versions/c.1.png", "an old fox, longer prompt\nSteps: 9, Seed: 1"
    )
    deliver(pg_dsn, synced(current, "c.png", container="forge-a"))
    earlier = synced(old, "c.png", container="forge-a", mtime="2026-11-01T00:00:00.000000Z")
    deliver(pg_dsn, versioned(earlier, old, "2026-11-02T00:00:00.000000Z"))
    found = {(r["prompt"], r["versioned_at"] is None) for r in rows(pg_dsn)}
    assert found == {("a new fox", True), ("an old fox, longer prompt", False)}


def test_real_fixture_files_give_their_generation_metadata(pg_dsn: str, tmp_path: Path) -> None:
    """The real A1111 PNG and JPEG and the ComfyUI PNG from tests/fixtures/real-media give
    the generator, prompt, seed, steps, sampler, cfg and model the SQLite catalog reads."""
    names = ("automatic1111_cropped.png", "automatic1111_cropped.jpg", "img2img_cropped.png")
    events = [synced(REAL_MEDIA / name, name) for name in names]
    deliver(pg_dsn, *events)
    got = {r["path"]: r for r in rows(pg_dsn)}
    a1111 = got["automatic1111_cropped.png"]
    assert (a1111["generator"], a1111["prompt"], a1111["negative_prompt"]) == (
        "a1111",
        "photo of a duck",
        "monochrome",
    )
    assert (a1111["seed"], a1111["steps"], a1111["sampler"], a1111["cfg_scale"]) == (
        235284042,
        15,
        "UniPC",
        5.0,
    )
    assert a1111["model"] == "realistic_realisticVisionV20_v20"
    assert got["automatic1111_cropped.jpg"]["seed"] == 235284042
    comfy = got["img2img_cropped.png"]
    assert (comfy["generator"], comfy["seed"], comfy["model"]) == (
        "comfyui",
        280823642470253,
        "v1-5-pruned-emaonly.ckpt",
    )
    assert comfy["negative_prompt"] == "watermark, text"
    assert json.loads(comfy["metadata_json"])["prompt"]
    assert all(r["metadata_error"] is None for r in got.values())


def test_a_seed_of_2_64_minus_1_is_kept_exactly(pg_dsn: str, tmp_path: Path) -> None:
    """A ComfyUI seed of 2^64 - 1 (past BIGINT) is stored exactly and found by seed."""
    seed = 2**64 - 1
    deliver(pg_dsn, synced(comfy_png(tmp_path / "big.png", seed), "big.png"))
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT seed::text FROM media").fetchone() == (str(seed),)
    (found,) = find(pg_dsn, seed=seed)
    assert found["seed"] == seed and isinstance(found["seed"], int)
    assert find(pg_dsn, seed=seed - 1) == []


def test_hostile_metadata_never_fails_a_delivery(pg_dsn: str, tmp_path: Path) -> None:
    """NUL bytes in a prompt (TEXT cannot hold them), a seed and steps past their columns,
    a prompt of 1 MiB of distinct words (past a tsvector's limit unless cut), a file that
    is gone: each still gets its row, what was left out is named in metadata_error."""
    nul = infotext_png(tmp_path / "nul.png", "red\x00fox\nNegative prompt: x\x00\nSteps: 3")
    huge = infotext_png(tmp_path / "huge.png", "dog\nSteps: 99999999999")
    big_seed = infotext_png(tmp_path / "seed.png", "cat\nSteps: 3, Seed: " + "9" * 30)
    words = " ".join(f"{i:x}z{i * 7919 % 100003:x}" for i in range(120_000))
    many = infotext_png(tmp_path / "many.png", words[: 1024 * 1024 - 20] + "\nSteps: 4")
    events = [
        synced(nul, "nul.png"),
        synced(huge, "huge.png"),
        synced(big_seed, "seed.png"),
        synced(many, "many.png"),
        synced(tmp_path / "gone.png", "gone.png"),
    ]
    deliver(pg_dsn, *events)
    got = {r["path"]: r for r in rows(pg_dsn)}
    assert set(got) == {"nul.png", "huge.png", "seed.png", "many.png", "gone.png"}
    assert got["nul.png"]["prompt"] == "red\ufffdfox" and got["nul.png"]["steps"] == 3
    assert got["huge.png"]["steps"] is None
    assert "steps does not fit INTEGER" in got["huge.png"]["metadata_error"]
    assert got["seed.png"]["seed"] is None and got["seed.png"]["prompt"] == "cat"
    assert "seed does not fit NUMERIC" in got["seed.png"]["metadata_error"]
    assert got["many.png"]["steps"] == 4 and len(got["many.png"]["prompt"]) > 500_000
    assert got["gone.png"]["metadata_error"].startswith("unreadable")
    assert [r["path"] for r in find(pg_dsn, prompt="0z0 1z1eef")] == ["many.png"]


@dataclasses.dataclass
class Generated(GenerationInfo):
    """GenerationInfo with the round-2 fields (until the metadata reader has them)."""

    loras: Any = None
    vae: Any = None
    scheduler: Any = None
    denoise: Any = None
    samplers: Any = None
    duration_s: Any = None
    frame_rate: Any = None


def test_round_2_columns_and_values_postgres_refuses(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LoRAs and samplers land as JSONB (NUL and NaN inside cleaned), the other round-2
    columns as typed; a value PostgreSQL refuses all the same leaves a row without metadata
    and the database's reason in metadata_error."""
    info = Generated(
        generator="comfyui",
        prompt="fox",
        loras=[{"name": "add\x00detail", "weight": float("nan")}, {"name": "style", "weight": 1}],
        vae="kl-f8.safetensors",
        scheduler="karras",
        denoise=0.6,
        samplers='[{"node": "3", "seed": 18446744073709551615}]',
        duration_s=2.5,
        frame_rate=24,
    )
    monkeypatch.setattr(postgres, "read_generation_info", lambda _path: info)
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    deliver(pg_dsn, synced(image, "a.png"))
    (row,) = rows(pg_dsn)
    assert row["loras"] == [
        {"name": "add\ufffddetail", "weight": None},
        {"name": "style", "weight": 1},
    ]
    assert row["samplers"] == [{"node": "3", "seed": 18446744073709551615}]
    assert (row["vae"], row["scheduler"], row["denoise"]) == ("kl-f8.safetensors", "karras", 0.6)
    assert (row["duration_s"], row["frame_rate"]) == (2.5, 24.0)

    def refusing(kind: Kind, value: object) -> object:
        return "many" if kind is Kind.INT else POSTGRES.convert(kind, value)

    monkeypatch.setattr(postgres, "POSTGRES", dataclasses.replace(POSTGRES, convert=refusing))
    deliver(pg_dsn, synced(image, "b.png"))
    row = next(r for r in rows(pg_dsn) if r["path"] == "b.png")
    assert row["prompt"] is None and row["loras"] is None
    assert row["metadata_error"].startswith("refused by the database: InvalidTextRepresentation")


# -- find ---------------------------------------------------------------------------------------
def test_the_duplicate_lookup_reads_the_sha256_index_alone_before_any_analyze(
    pg_dsn: str,
) -> None:
    """Before the table's first ANALYZE (a new catalog, a bulk load in one transaction) the
    duplicate rule's lookup must read the sha256 index alone: the installed trigger's
    lookup, planned on 2,000 unanalysed rows like real ones, never touches `media_pkey`,
    and the rule still holds after the bulk load. Before migration 5 the planner ANDed the
    sha256 index with a range scan of `media_pkey` over every older id (this test failed):
    each insert read the table, a COPY slowed from 1,400 to 500 rows/s over 14,000 rows and
    350,000 rows took over 25 minutes (152 s now)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
        maker = RowMaker()  # rows like real ones (prompts, models, 1-3 KB of metadata)
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY media ({BENCH_COLUMNS}) FROM STDIN") as copy,
        ):
            for n in range(2000):
                row = maker.row(n, POSTGRES)  # each content twice: sha256 and size
                copy.write_row((*row[:3], n % 1000, row[4], f"{n % 1000:064x}", *row[6:]))
        body = conn.execute("SELECT pg_get_functiondef('media_duplicate_of'::regproc)")
        found = re.search(
            r"\(SELECT min\(o\.id\) FROM media AS o WHERE [^)]*NEW\.id\)", body.fetchone()[0]
        )
        assert found is not None
        lookup = found[0][1:-1].replace("NEW.sha256", "'ab'").replace("NEW.size", "1")
        plan = conn.execute("EXPLAIN " + lookup.replace("NEW.id", "1500")).fetchall()
        pairs = conn.execute(
            "SELECT count(*) FROM media AS m JOIN media AS o ON o.id = m.duplicate_of"
            " WHERE o.sha256 = m.sha256 AND o.id < m.id"
        ).fetchone()
    text = "\n".join(line for (line,) in plan)
    assert "media_by_sha256" in text and "media_pkey" not in text, text
    assert pairs == (1000,)  # each second copy names the first


@pytest.fixture
def searchable(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, str]]:
    """A catalog of six files (made-up metadata, mtimes 1 h to 6 h ago, a.png newest);
    return the DSN and {path: container}."""
    made = {
        "a.png": Generated(
            prompt="a red fox in snow",
            negative_prompt="blurry",
            seed=42,
            model="realisticVisionV20",
            loras=[{"name": "add_detail", "weight": 0.5}],
        ),
        "b.png": Generated(prompt="a blue cat", negative_prompt="red fox", seed=420, model="sd_xl"),
        "c.png": Generated(prompt="RED FOXES", seed=2**64 - 1, model="sdxxl 100%"),
        "d.png": Generated(
            prompt="Füchse im Schnee, 狐狸", model="flux", loras=[{"name": "sty%le"}]
        ),
        "e.png": Generated(prompt=None, seed=42, loras='{"name": "not a list"}'),
        "f.png": Generated(prompt="'; DROP TABLE media; -- fox", model="x\\y"),
    }
    monkeypatch.setattr(
        postgres, "read_generation_info", lambda p: made[os.path.basename(os.fsdecode(p))]
    )
    now = datetime.now(UTC)
    containers = {}
    events = []
    for hours, name in enumerate(made, start=1):
        container = "forge-ab" if name == "c.png" else "forge-a"
        containers[name] = container
        mtime = (now - timedelta(hours=hours, minutes=-1)).isoformat().replace("+00:00", "Z")
        events.append(synced(tmp_path / name, name, container=container, mtime=mtime))
    deliver(pg_dsn, *events)
    return pg_dsn, containers


def paths(found: list[dict[str, Any]]) -> list[str]:
    return [r["path"] for r in found]


def test_find_by_each_filter(searchable: tuple[str, dict[str, str]]) -> None:
    """prompt: every word, in prompt or negative prompt, any case, whole words; model and
    lora: substrings, any case, % and _ literal; seed and container exact; since_s by
    mtime; newest first; limit; filters together."""
    dsn, _ = searchable
    assert paths(find(dsn)) == ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png"]
    assert paths(find(dsn, prompt="Red FOX")) == ["a.png", "b.png"]
    assert paths(find(dsn, prompt="foxes")) == ["c.png"]
    assert paths(find(dsn, prompt="狐狸")) == ["d.png"]
    assert paths(find(dsn, prompt="füchse")) == ["d.png"]
    assert paths(find(dsn, model="VISION")) == ["a.png"]
    assert paths(find(dsn, model="d_x")) == ["b.png"]
    assert paths(find(dsn, model="0%")) == ["c.png"]
    assert paths(find(dsn, model="%")) == ["c.png"]
    assert paths(find(dsn, model="\\")) == ["f.png"]
    assert paths(find(dsn, seed=42)) == ["a.png", "e.png"]
    assert paths(find(dsn, seed=2**64 - 1)) == ["c.png"]
    assert paths(find(dsn, lora="DETAIL")) == ["a.png"]
    assert paths(find(dsn, lora="_")) == ["a.png"]
    assert paths(find(dsn, lora="y%l")) == ["d.png"]
    assert paths(find(dsn, lora="not")) == []
    assert paths(find(dsn, container="forge-a")) == ["a.png", "b.png", "d.png", "e.png", "f.png"]
    assert paths(find(dsn, container="forge-ab")) == ["c.png"]
    assert paths(find(dsn, container="forge")) == []
    assert paths(find(dsn, since_s=3 * 3600)) == ["a.png", "b.png", "c.png"]
    assert paths(find(dsn, since_s=60)) == []
    assert paths(find(dsn, limit=2)) == ["a.png", "b.png"]
    assert paths(find(dsn, prompt="fox", seed=42, model="real", container="forge-a")) == ["a.png"]
    (row,) = find(dsn, seed=2**64 - 1)
    assert tuple(row) == FOUND_KEYS
    assert row["mtime"].endswith("Z") and row["versioned_at"] is None
    assert find(dsn, lora="detail")[0]["loras"] == [{"name": "add_detail", "weight": 0.5}]
    json.dumps(find(dsn))


HOSTILE = [
    "'; DROP TABLE media; --",
    "fox & !red | (cat",
    "fox:* <-> red",
    "\\",
    "%",
    "_",
    "\x00",
    "fox\x00red",
    "\ud800",
    "' OR 1=1 --",
    "$1 %s %(prompt)s {}",
    "x" * 100_000,
    "(((",
    "\u202e\u200b",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_find_with_hostile_strings(searchable: tuple[str, dict[str, str]], value: str) -> None:
    """No string as prompt, model, lora or container makes find fail or match more than
    its literal words or text; the table is still there after."""
    dsn, _ = searchable
    everything = paths(find(dsn))
    assert paths(find(dsn, model=value)) == {"\\": ["f.png"], "%": ["c.png"], "_": ["b.png"]}.get(
        value, []
    )
    assert paths(find(dsn, lora=value)) == {"_": ["a.png"], "%": ["d.png"]}.get(value, [])
    assert paths(find(dsn, container=value)) == []
    found = paths(find(dsn, prompt=value))
    assert set(found) <= set(everything)
    assert paths(find(dsn)) == everything


def test_find_prompt_words_hostile_and_empty(searchable: tuple[str, dict[str, str]]) -> None:
    """Prompt text is words only, as in the SQLite catalog: operators and quotes are not
    syntax, NUL breaks words, a prompt without any word matches nothing; a limit past the
    cap is capped."""
    dsn, _ = searchable
    assert paths(find(dsn, prompt="'; DROP TABLE media; --")) == ["f.png"]
    assert paths(find(dsn, prompt="fox & !red")) == ["a.png", "b.png"]
    assert paths(find(dsn, prompt="fox:*")) == ["a.png", "b.png", "f.png"]
    assert paths(find(dsn, prompt="fox\x00red")) == ["a.png", "b.png"]
    assert find(dsn, prompt="") == [] and find(dsn, prompt="(((") == []
    assert len(find(dsn, limit=10**9)) == 6
    assert find(dsn, limit=-5) == []
    assert find(dsn, since_s=-3600) == []


# -- migrations and several writers ------------------------------------------------------------
def test_sinks_starting_together_migrate_once_and_write_concurrently(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Eight sinks (eight connections, one container each) start at once on an empty
    database and each deliver 20 files, every event twice: one schema_version row, and
    every file exactly once."""
    image = infotext_png(tmp_path / "x.png", "a fox\nSteps: 3")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def feed(number: int) -> None:
        try:
            start.wait()
            events = [synced(image, f"{i}.png", container=f"box-{number}") for i in range(20)]
            deliver(pg_dsn, *[e for event in events for e in (event, event)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == [
            (version,) for version in range(1, len(MIGRATIONS) + 1)
        ]
        counts = conn.execute(
            "SELECT container, path, count(*) FROM media GROUP BY 1, 2"
        ).fetchall()
    assert len(counts) == 160 and {c for _, _, c in counts} == {1}


def test_a_schema_newer_than_the_code_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """A database migrated by a newer forge-syncd makes deliveries fail (and so retried)
    with a clear reason, rather than writing rows it does not understand."""
    deliver(pg_dsn, synced(tmp_path / "a.png", "a.png"))
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        deliver(pg_dsn, synced(tmp_path / "b.png", "b.png"))


def test_a_role_that_may_only_write_rows_runs_on_a_migrated_database(
    pg_server: PostgresServer, pg_dsn: str, tmp_path: Path
) -> None:
    """Once the owner has migrated the database, a role with only SELECT, INSERT and
    UPDATE (no CREATE) delivers and searches: no DDL is tried when nothing is to migrate."""
    deliver(pg_dsn, synced(tmp_path / "a.png", "a.png"))
    dbname = pg_dsn.rsplit("/", 1)[1]
    with pg_server.superuser(dbname) as conn:
        conn.execute(f"CREATE ROLE writer_{dbname} LOGIN PASSWORD '{pg_server.password}'")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON media, schema_version TO writer_{dbname}")
    writer = pg_server.dsn(dbname, user=f"writer_{dbname}")
    deliver(writer, synced(tmp_path / "b.png", "b.png"))
    assert paths(find(writer)) == ["b.png", "a.png"]


def test_deliveries_fail_while_the_database_is_down_and_resume(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    """With the server stopped, deliver and find raise a connection error (so the
    dispatcher retries); once it is back, the same sink reconnects and the retried event
    lands. A connection the server closed while idle is replaced without a failure."""
    dsn = own_server.create_database("media")
    sink = PostgresSink("shared", {"dsn": dsn})
    try:
        sink.deliver(synced(tmp_path / "a.png", "a.png"))
        own_server.stop()
        retried = synced(tmp_path / "b.png", "b.png")
        for _ in range(2):
            with pytest.raises(psycopg.OperationalError):
                sink.deliver(retried)
        with pytest.raises(psycopg.OperationalError):
            sink.find(CatalogQuery())
        own_server.start()
        sink.deliver(retried)
        own_server.stop()
        own_server.start()
        sink.deliver(synced(tmp_path / "c.png", "c.png"))
        assert paths(sink.find(CatalogQuery())) == ["c.png", "b.png", "a.png"]
    finally:
        sink.close()
    assert len(rows(dsn)) == 3


# -- daemons ------------------------------------------------------------------------------------
def daemon_config(
    work: Path, sshd: SshdServer, container: str, dsn: str, files: int, interval: str = "1s"
) -> tuple[Path, Path]:
    """Write a config for one container `container` with a postgres sink, its remote
    holding `files` small images and the real fixtures; return (config, remote)."""
    remote = work / "remote"
    for i in range(files):
        write_file(remote / "day" / f"{i:03d}.png", os.urandom(500 + i), 1.7e9)
    for fixture in ("automatic1111_cropped.png", "img2img_cropped.png"):
        write_file(remote / fixture, (REAL_MEDIA / fixture).read_bytes(), 1.7e9)
    config = write_config(work, sshd, remote, interval=interval)
    text = config.read_text().replace("name: forge-a", f"name: {container}")
    config.write_text(text + f"ingest:\n  - {{name: shared, type: postgres, dsn: '{dsn}'}}\n")
    return config, remote


def current_paths(dsn: str) -> list[tuple[str, str]]:
    try:
        with psycopg.connect(dsn) as conn:
            found = conn.execute(
                "SELECT container, path FROM media WHERE versioned_at IS NULL ORDER BY 1, 2"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    except psycopg.OperationalError:
        return []
    return [(c, p) for c, p in found]


def expected(container: str, files: int) -> list[tuple[str, str]]:
    names = [f"day/{i:03d}.png" for i in range(files)]
    return sorted(
        (container, p) for p in [*names, "automatic1111_cropped.png", "img2img_cropped.png"]
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def log_text(work: Path) -> str:
    log = work / "log" / "forge-syncd.jsonl"
    return log.read_text() if log.exists() else ""


@pytest.mark.timeout(240)
def test_two_daemons_feed_one_database(pg_dsn: str, sshd: SshdServer, tmp_path: Path) -> None:
    """Two real forge-syncd processes, each with its own container, start together on one
    empty database: every file of both shows up exactly once, with its metadata; a file
    changed in place gets a versioned row and a new current one; rewinding one daemon's
    sink cursor (every event delivered again) changes no row."""
    works = {name: tmp_path / name for name in ("forge-a", "forge-b")}
    configs = {}
    for name, work in works.items():
        work.mkdir()
        configs[name] = daemon_config(work, sshd, name, pg_dsn, files=40)
    daemons = [start_daemon(config) for config, _ in configs.values()]
    want = expected("forge-a", 40) + expected("forge-b", 40)
    try:
        wait_until(lambda: current_paths(pg_dsn) == want, timeout=120, what="both daemons' rows")
        for name, (_, remote) in configs.items():
            write_file(remote / "day" / "000.png", b"changed " + name.encode(), 1.8e9)
        wait_until(
            lambda: sum(r["versioned_at"] is not None for r in rows(pg_dsn)) == 2,
            timeout=60,
            what="the versioned rows",
        )
        wait_until(
            lambda: all(
                r["size"] == 15
                for r in rows(pg_dsn)
                if r["path"] == "day/000.png" and r["versioned_at"] is None
            ),
            timeout=60,
            what="the new current rows",
        )
    finally:
        for daemon in daemons:
            stop(daemon)
    before = rows(pg_dsn)
    assert current_paths(pg_dsn) == want and len(before) == len(want) + 2
    for name in works:
        (old,) = [r for r in before if r["container"] == name and r["versioned_at"] is not None]
        assert old["path"] == "day/000.png" and "/.versions/" in old["local_path"]
        duck = next(
            r for r in before if (r["container"], r["path"]) == (name, "automatic1111_cropped.png")
        )
        assert (duck["prompt"], duck["seed"]) == ("photo of a duck", 235284042)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == [
            (version,) for version in range(1, len(MIGRATIONS) + 1)
        ]

    manifest = sqlite3.connect(works["forge-a"] / "state" / "manifest.sqlite")
    with manifest:
        manifest.execute("UPDATE sink_cursors SET last_id = 0 WHERE sink = 'shared'")
    manifest.close()
    config_a = configs["forge-a"][0]
    config_a.write_text(config_a.read_text().replace("interval: 1s", "interval: 1h"))
    daemon = start_daemon(config_a)
    try:
        wait_until(lambda: pending(works["forge-a"]) == 0, timeout=60, what="the redelivery")
    finally:
        stop(daemon)
    assert rows(pg_dsn) == before


def pending(work: Path) -> int:
    db = sqlite3.connect(work / "state" / "manifest.sqlite")
    try:
        (last,) = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        (cursor,) = db.execute("SELECT last_id FROM sink_cursors WHERE sink = 'shared'").fetchone()
        return int(last) - int(cursor)
    finally:
        db.close()


@pytest.mark.timeout(240)
def test_database_down_then_up_loses_nothing(
    own_server: PostgresServer, sshd: SshdServer, tmp_path: Path
) -> None:
    """A daemon started while PostgreSQL is down syncs anyway and its deliveries fail;
    when the database comes up every file arrives. Down again mid-run with new files: the
    same, once the database is back. Every file exactly once."""
    dsn = own_server.create_database("media")
    own_server.stop()
    config, remote = daemon_config(tmp_path, sshd, "forge-a", dsn, files=5)
    daemon = start_daemon(config)
    try:
        wait_until(lambda: "sink_delivery_failed" in log_text(tmp_path), what="a failed delivery")
        assert current_paths(dsn) == []
        own_server.start()
        wait_until(lambda: current_paths(dsn) == expected("forge-a", 5), timeout=90, what="rows")
        failures = log_text(tmp_path).count("sink_delivery_failed")
        own_server.stop()
        for i in range(5, 12):
            write_file(remote / "day" / f"{i:03d}.png", os.urandom(700 + i), 1.7e9)
        wait_until(
            lambda: len(list((tmp_path / "media" / "forge-a" / "day").glob("*.png"))) == 12,
            what="the second sync while the database is down",
        )
        wait_until(
            lambda: log_text(tmp_path).count("sink_delivery_failed") > failures,
            what="a failed delivery on the broken connection",
        )
        own_server.start()
        wait_until(lambda: current_paths(dsn) == expected("forge-a", 12), timeout=90, what="rows")
    finally:
        stop(daemon)
    assert len(rows(dsn)) == len(expected("forge-a", 12))


# -- a slow or locked database, a short outage ---------------------------------------------------
def ctl(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed forge-syncctl against the daemon of `work`."""
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(work / "run" / "control.sock"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def started_with_rows(
    dsn: str, sshd: SshdServer, work: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a daemon (one container, a postgres sink, hourly syncs) and wait until its
    first sync's rows are in the database; return it and its container's remote folder."""
    config, remote = daemon_config(work, sshd, "forge-a", dsn, files=3, interval="1h")
    daemon = start_daemon(config)
    wait_until(lambda: current_paths(dsn) == expected("forge-a", 3), timeout=90, what="rows")
    return daemon, remote


def delivery_state(server: PostgresServer, dbname: str) -> tuple[str, str] | None:
    """Return (wait_event_type, wait_event) of the daemon's delivery connection while it
    runs a statement on `media`, or None."""
    with server.superuser() as conn:
        found = conn.execute(
            "SELECT coalesce(wait_event_type, ''), coalesce(wait_event, '') FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'forge-syncd' AND state = 'active'"
            " AND query LIKE 'INSERT INTO media%%'",
            (dbname,),
        ).fetchone()
    return None if found is None else (found[0], found[1])


def new_file_synced(work: Path, remote: Path, name: str) -> None:
    """Put a new file on the remote and sync it (its events then wait for the sink)."""
    write_file(remote / "day" / name, os.urandom(900), 1.7e9)
    result = ctl(work, "sync", "--wait")
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(240)
def test_find_does_not_wait_for_a_delivery_stuck_in_the_database(
    pg_server: PostgresServer, pg_dsn: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 23, item 6): deliveries and `find` shared one connection and lock,
    so a find behind a delivery stuck in the database waited for it and forge-syncctl said
    "lost forge-syncd". With a delivery held inside a trigger (it loops until the test
    releases it), `find` answers at once from its own connection; once released, the
    delivery lands."""
    dbname = conninfo_to_dict(pg_dsn)["dbname"]
    daemon, remote = started_with_rows(pg_dsn, sshd, tmp_path)
    released = False
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE release (at timestamptz)")
            conn.execute(
                "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " WHILE NOT EXISTS (SELECT 1 FROM release) LOOP PERFORM pg_sleep(0.05);"
                " END LOOP; RETURN NEW; END $$"
            )
            conn.execute(
                "CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON media"
                " FOR EACH ROW EXECUTE FUNCTION stall()"
            )
        new_file_synced(tmp_path, remote, "stuck.png")
        wait_until(
            lambda: delivery_state(pg_server, dbname) == ("Timeout", "PgSleep"),
            what="the delivery stuck in the trigger",
        )
        found = ctl(tmp_path, "find", "--json")
        assert found.returncode == 0, found.stderr
        names = sorted(row["path"] for row in json.loads(found.stdout)["files"])
        assert names == sorted(path for _, path in expected("forge-a", 3))
        assert delivery_state(pg_server, dbname) is not None  # still stuck meanwhile
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO release VALUES (now())")
        released = True
        wait_until(lambda: ("forge-a", "day/stuck.png") in current_paths(pg_dsn), what="the row")
    finally:
        if not released:
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("INSERT INTO release VALUES (now())")
        stop(daemon)


@pytest.mark.timeout(240)
def test_find_behind_a_locked_table_times_out_with_a_clear_error(
    pg_server: PostgresServer, pg_dsn: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 23, item 6): with `media` locked by another session (ACCESS
    EXCLUSIVE, held in an open transaction) deliveries wait for the lock, and `find` waited
    with no limit until forge-syncctl said "lost forge-syncd". It now fails after the
    search's statement_timeout (5 s) with exit 1 and a message naming the database and the
    timeout, logged as `catalog_search_timeout`; the daemon keeps answering, and once the
    lock goes the waiting delivery lands."""
    dbname = conninfo_to_dict(pg_dsn)["dbname"]
    daemon, remote = started_with_rows(pg_dsn, sshd, tmp_path)
    locker = pg_server.superuser(dbname)
    try:
        locker.autocommit = False
        locker.execute("LOCK TABLE media IN ACCESS EXCLUSIVE MODE")
        new_file_synced(tmp_path, remote, "waiting.png")
        wait_until(
            lambda: (delivery_state(pg_server, dbname) or ("",))[0] == "Lock",
            what="the delivery waiting for the lock",
        )
        found = ctl(tmp_path, "find", "--prompt", "duck")
        assert found.returncode == 1, (found.stdout, found.stderr)
        assert f"PostgreSQL database '{dbname}' on 127.0.0.1:{pg_server.port}" in found.stderr
        assert "did not answer within 5 s (statement_timeout)" in found.stderr
        assert "lost" not in found.stderr and "Traceback" not in found.stderr
        assert "catalog_search_timeout" in log_text(tmp_path)
        assert ctl(tmp_path, "status").returncode == 0
        locker.rollback()
        wait_until(lambda: ("forge-a", "day/waiting.png") in current_paths(pg_dsn), what="the row")
    finally:
        locker.close()
        stop(daemon)


@pytest.mark.timeout(300)
def test_a_short_outage_under_traffic_keeps_a_short_backoff(
    own_server: PostgresServer, sshd: SshdServer, tmp_path: Path
) -> None:
    """Regression (issue 23, item 8): every event that arrived while the database was down
    was tried at once and counted as a failure, so a short restart under traffic left the
    sink waiting 5 min. With PostgreSQL stopped while ten syncs each add a file, each
    failure comes only after the previous one's whole wait (attempts 1, 2, 3 ... waiting
    1, 2, 4 ... s), so once the database is back the rows arrive within a bounded time and
    the sink reports no failures."""
    dsn = own_server.create_database("media")
    daemon, remote = started_with_rows(dsn, sshd, tmp_path)
    try:
        own_server.stop()
        for number in range(10):
            new_file_synced(tmp_path, remote, f"outage-{number}.png")
        own_server.start()
        every = [*expected("forge-a", 3), *(("forge-a", f"day/outage-{n}.png") for n in range(10))]
        wait_until(lambda: current_paths(dsn) == sorted(every), timeout=90, what="the rows")
        wait_until(
            lambda: (
                json.loads(ctl(tmp_path, "status", "--json").stdout)["sinks"][0]["failures"] == 0
            ),
            what="the sink to report no failures",
        )
    finally:
        stop(daemon)
    log = [json.loads(line) for line in log_text(tmp_path).splitlines()]
    failed = [r for r in log if r["event"] == "sink_delivery_failed"]
    assert failed, "the outage made no delivery fail"
    assert [r["attempt"] for r in failed] == list(range(1, len(failed) + 1))
    for before, after in itertools.pairwise(failed):
        waited = (stamp(after["ts"]) - stamp(before["ts"])).total_seconds()
        assert waited >= before["retry_in_s"] - 0.05, (before, after)
    assert "sink_recovered" in [r["event"] for r in log]


def stamp(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


SLOW_INSERTS = """
CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(1);
    RETURN NEW;
END $$;
CREATE TRIGGER slow_insert BEFORE INSERT ON media FOR EACH ROW EXECUTE FUNCTION slow_insert();
"""


def inserts_in_flight(dsn: str) -> int:
    """Return how many sessions sit in the slow-insert trigger's sleep (0 if unreachable)."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
                " AND query LIKE 'INSERT INTO media%%'"
            ).fetchone() or (0,)
            return int(count)
    except psycopg.OperationalError:
        return 0


@pytest.mark.timeout(240)
def test_database_stopped_during_a_delivery_loses_nothing_and_duplicates_nothing(
    own_server: PostgresServer, sshd: SshdServer, tmp_path: Path
) -> None:
    """PostgreSQL is stopped while the daemon's INSERT of a row is in flight (a trigger
    makes every insert sleep 1 s, and the stop comes while one sleeps): that delivery fails
    and is retried, and once the database is back every file has exactly one current row,
    the one in flight included; the sink's cursor reaches the last event."""
    dsn = own_server.create_database("media")
    find(dsn)  # creates the schema, so the trigger has its table
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SLOW_INSERTS)
    config, _remote = daemon_config(tmp_path, sshd, "forge-a", dsn, files=5)
    daemon = start_daemon(config)
    try:
        wait_until(lambda: inserts_in_flight(dsn) > 0, timeout=60, what="an INSERT in flight")
        landed = len(current_paths(dsn))
        own_server.stop()  # `pg_ctl stop -m fast`: the sleeping INSERT is rolled back
        assert landed < len(expected("forge-a", 5))
        wait_until(
            lambda: "sink_delivery_failed" in log_text(tmp_path),
            what="the interrupted delivery to fail",
        )
        own_server.start()
        wait_until(
            lambda: current_paths(dsn) == expected("forge-a", 5), timeout=120, what="all rows"
        )
        wait_until(lambda: pending(tmp_path) == 0, timeout=60, what="the sink's cursor")
    finally:
        stop(daemon)
    found = rows(dsn)
    assert sorted((row["container"], row["path"]) for row in found) == expected("forge-a", 5)
    assert all(row["versioned_at"] is None for row in found)
