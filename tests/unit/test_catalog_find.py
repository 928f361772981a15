"""The catalog's search (`CatalogSink.find`) and its schema migration 2 (unit tier: events
delivered straight to the sink, its real SQLite file): each filter, hostile prompt text,
seeds past SQLite's INTEGER, catalogs made by earlier versions, the full-text index kept in
step with every change, and the `find` control params and output lines around it."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.catalog import schema
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.catalog.schema import FOUND_KEYS
from forge_syncd.catalog.sqlite_migrations import MIGRATIONS
from forge_syncd.control.protocol import BAD_PARAMS, Request, RequestError
from forge_syncd.events import backfill
from forge_syncd.events.sinks import catalog
from forge_syncd.events.sinks.catalog import CatalogSink
from forge_syncd.library import events as records
from forge_syncd.library.manifest import Manifest, SyncedFile, VersionMove
from forge_syncd.service.find import MAX_FOUND_BYTES, bounded_rows, find_query
from tests.unit.test_metadata import png

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
NOW = datetime.now(UTC)
INFO_FIELDS = schema.METADATA


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def info(**fields: Any) -> SimpleNamespace:
    """A metadata reading with every catalog field (None unless given)."""
    return SimpleNamespace(**{name: fields.get(name) for name in INFO_FIELDS})


class Catalog:
    """A catalog sink whose metadata reader answers from a table (by local path)."""

    def __init__(self, path: Path, mp: pytest.MonkeyPatch) -> None:
        self.infos: dict[str, SimpleNamespace] = {}
        mp.setattr(catalog, "read_generation_info", lambda p: self.infos[os.fsdecode(p)])
        self.path = path
        self.sink = CatalogSink("catalog", {"path": path})

    def synced(
        self, path: str, age_s: float = 0, container: str = "forge-a", **fields: Any
    ) -> dict[str, Any]:
        local = f"/srv/media/{container}/{path}"
        self.infos[local] = info(**fields)
        event = {
            "type": "file_synced",
            "container": container,
            "path": path,
            "local_path": local,
            "size": 100,
            "mtime": stamp(NOW - timedelta(seconds=age_s)),
            "sha256": None,
        }
        self.sink.deliver(event)
        return event

    def paths(self, **query: Any) -> list[str]:
        return [row["path"] for row in self.sink.find(CatalogQuery(**query))]


@pytest.fixture
def cat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    made = Catalog(tmp_path / "catalog.sqlite", monkeypatch)
    yield made
    made.sink.close()


def fts_consistent(path: Path) -> None:
    """Raise unless the full-text index holds exactly what the media rows say."""
    db = sqlite3.connect(path)
    try:
        db.execute("INSERT INTO media_text (media_text, rank) VALUES ('integrity-check', 1)")
        loras = db.execute(
            "SELECT count(*) FROM media_loras WHERE media_id NOT IN (SELECT id FROM media)"
        ).fetchone()[0]
        assert loras == 0
    finally:
        db.close()


def test_each_filter_finds_exactly_its_rows(cat: Catalog) -> None:
    """prompt (all words, either prompt), model (substring, any case), seed (exact), lora
    (substring, any case), container (exact) and since (by mtime) each keep exactly the
    rows that match; together they must all match; newest first."""
    duck = [{"name": "DuckStyle_v2", "weight": 0.8}]
    cat.synced(
        "a.png", 10, prompt="photo of a duck", model="realisticVision_v20", seed=1, loras=duck
    )
    cat.synced(
        "b.png", 20, prompt="a duck pond", negative_prompt="photo", model="SDXL_base", seed=2
    )
    cat.synced("c.png", 30, container="comfy-1", prompt="cat", model="sdxl_turbo", seed=1)
    cat.synced("d.png", 8 * 86400, prompt="old photo duck", model="RealisticVision_v51", seed=3)
    assert cat.paths() == ["a.png", "b.png", "c.png", "d.png"]
    assert cat.paths(prompt="duck photo") == ["a.png", "b.png", "d.png"]
    assert cat.paths(prompt="DUCK pond") == ["b.png"]
    assert cat.paths(prompt="duck zebra") == []
    assert cat.paths(model="realisticvision") == ["a.png", "d.png"]
    assert cat.paths(model="XL") == ["b.png", "c.png"]
    assert cat.paths(model="nothing") == []
    assert cat.paths(seed=1) == ["a.png", "c.png"]
    assert cat.paths(lora="duckstyle") == ["a.png"]
    assert cat.paths(lora="nothing") == []
    assert cat.paths(container="comfy-1") == ["c.png"]
    assert cat.paths(container="comfy") == []
    assert cat.paths(since_s=7 * 86400) == ["a.png", "b.png", "c.png"]
    assert cat.paths(prompt="duck", model="vision", since_s=86400) == ["a.png"]
    assert cat.paths(seed=1, container="forge-a") == ["a.png"]
    assert cat.paths(limit=2) == ["a.png", "b.png"]


def test_found_rows_have_the_found_keys_as_json_values(cat: Catalog) -> None:
    """Each row has exactly FOUND_KEYS; loras come back decoded, a seed as an int."""
    loras = [{"name": "detail", "weight": 0.5}, {"name": "Äther", "weight": 1.0}]
    cat.synced("a.png", prompt="x", seed=2**64 - 1, loras=loras, duration_s=None)
    (row,) = cat.sink.find(CatalogQuery())
    assert tuple(row) == FOUND_KEYS
    assert row["loras"] == loras
    assert row["seed"] == 2**64 - 1
    json.dumps(row)
    assert cat.paths(lora="äther") == ["a.png"]  # Unicode case folding, not ASCII only


@pytest.mark.parametrize("seed", [2**63 - 1, 2**63, 2**64 - 1, -(2**63), 0])
def test_seed_search_is_exact_also_past_sqlite_integer(cat: Catalog, seed: int) -> None:
    """A seed at or past 2^63 (kept as text) is found by its exact value, and only it;
    its neighbours are not found."""
    cat.synced("a.png", seed=seed)
    cat.synced("b.png", seed=seed + 1)
    assert cat.paths(seed=seed) == ["a.png"]
    assert [r["seed"] for r in cat.sink.find(CatalogQuery(seed=seed + 1))] == [seed + 1]


def test_model_search_folds_unicode_case(cat: Catalog) -> None:
    """`model` is a case-insensitive substring also beyond ASCII (SQLite's LIKE is not)."""
    cat.synced("a.png", model="ÄRGER_xl")
    cat.synced("b.png", model="plain")
    assert cat.paths(model="ärger") == ["a.png"]
    assert cat.paths(model="%") == []  # no LIKE wildcards either
    assert cat.paths(model="_") == ["a.png"]


def test_malformed_lora_json_never_fails_a_write(cat: Catalog) -> None:
    """LoRA lists with odd members (no name, a number name, plain strings) are stored and
    their good names found; a row written by hand with loras that are not JSON is kept."""
    odd = [{"weight": 1}, {"name": 7}, "just text", {"name": "good", "weight": 1}]
    cat.synced("a.png", loras=odd)
    assert cat.paths(lora="good") == ["a.png"]
    db = sqlite3.connect(cat.path)
    db.execute(
        "INSERT INTO media (container, path, local_path, size, mtime, loras)"
        " VALUES ('x', 'y.png', '/y.png', 1, '2026-01-01T00:00:00.000000Z', 'not json')"
    )
    db.execute("UPDATE media SET loras = '{broken' WHERE path = 'y.png'")
    db.commit()
    db.close()
    assert [r["loras"] for r in cat.sink.find(CatalogQuery(container="x"))] == [None]
    fts_consistent(cat.path)


CORPUS = {
    "a.png": ("photo of a duck, best quality", "blurry, lowres"),
    "b.png": ("NEAR the pond: (duck:1.2) AND geese", "photo"),
    "c.png": ('a "quoted" cat * OR dog', None),
    "d.png": ("prompt:injection - minus -sign ^caret", "x_y z"),
    "e.png": ("don't stop believing, 1girl 8k", "bad hands"),
    "f.png": (None, None),
}
WORDS = sorted({w for p in CORPUS.values() for t in p if t for w in t.split()})
SYNTAX = ['"', "*", "NEAR(", "NEAR", "(", ")", "-", "+", "^", ":", "OR", "AND", "NOT", "\x00"]


def tokens(text: str | None) -> list[str]:
    """unicode61's tokens of ASCII text: runs of letters and digits, lower-cased."""
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def expected(prompt: str) -> set[str]:
    """The rows a prompt search must return: every word's tokens, in order, in the prompt
    or in the negative prompt (a word without letters or digits asks nothing)."""
    words = [tokens(w) for w in re.split(r"[\s\x00]+", prompt)]
    words = [w for w in words if w]
    if not words:
        return set()
    return {
        path
        for path, texts in CORPUS.items()
        if all(any(contains(tokens(t), w) for t in texts) for w in words)
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with pytest.MonkeyPatch.context() as mp:  # the stand-in reader only while it is filled
        made = Catalog(tmp_path_factory.mktemp("corpus") / "catalog.sqlite", mp)
        for age, (path, (prompt, negative)) in enumerate(CORPUS.items()):
            made.synced(path, age, prompt=prompt, negative_prompt=negative)
    yield made
    made.sink.close()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(WORDS + SYNTAX), st.text('ab"*()-:^_ \x00dukNEAR', max_size=8)),
        min_size=1,
        max_size=6,
    ).map(" ".join)
)
def test_hostile_prompts_never_raise_and_find_exactly_the_words(
    corpus: Catalog, prompt: str
) -> None:
    """Quotes, `*`, `NEAR(`, `-`, `:`, AND/OR/NOT, NUL: a prompt search never raises and
    returns exactly the rows holding every word (no FTS5 syntax reaches the engine)."""
    found = corpus.paths(prompt=prompt)
    assert set(found) == expected(prompt)
    assert len(found) == len(set(found))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=10), st.text(max_size=10))
def test_any_text_in_any_filter_never_raises(
    corpus: Catalog, prompt: str, model: str, lora: str
) -> None:
    """Arbitrary Unicode (controls, surrogate-free) in prompt, model and lora: no error."""
    corpus.sink.find(CatalogQuery(prompt=prompt, model=model, lora=lora))
    corpus.sink.find(CatalogQuery(prompt=prompt))


def test_full_text_follows_update_version_purge_and_delete(cat: Catalog) -> None:
    """A new file under the same path replaces its words; a version keeps its own words
    (and is marked); a purge marks the row; a deleted row leaves the index; the index
    equals the rows throughout."""
    cat.synced("a.png", 5, prompt="red fox")
    cat.synced("a.png", 4, prompt="blue whale")
    assert cat.paths(prompt="fox") == []
    assert cat.paths(prompt="whale") == ["a.png"]
    version = {
        "type": "file_versioned",
        "container": "forge-a",
        "path": "a.png",
        "local_path": "/srv/media/forge-a/.versions/a.20261201T000000.000000Z.png",
        "previous_local_path": "/srv/media/forge-a/a.png",
        "size": 100,
        "mtime": stamp(NOW - timedelta(seconds=4)),
        "sha256": None,
        "versioned_at": stamp(NOW),
    }
    cat.sink.deliver(version)
    cat.synced("a.png", 1, prompt="green parrot")
    rows = {r["prompt"]: r for r in cat.sink.find(CatalogQuery())}
    assert rows["blue whale"]["versioned_at"] is not None
    assert rows["blue whale"]["local_path"] == version["local_path"]
    assert rows["green parrot"]["versioned_at"] is None
    assert cat.paths(prompt="whale") == ["a.png"]
    cat.sink.deliver(
        {"type": "file_purged", "container": "forge-a", "path": "a.png", "purged_at": stamp(NOW)}
    )
    (parrot,) = cat.sink.find(CatalogQuery(prompt="parrot"))
    assert parrot["purged_at"] == stamp(NOW)
    fts_consistent(cat.path)
    db = sqlite3.connect(cat.path)
    db.execute("DELETE FROM media WHERE prompt = 'blue whale'")
    db.commit()
    db.close()
    assert cat.paths(prompt="whale") == []
    fts_consistent(cat.path)


def test_a_version_does_not_take_the_row_of_another_file(cat: Catalog) -> None:
    """A version delivered after the path's current row already describes a newer file
    (a backfill, a catalog added late) gets a row of its own; the current row stays."""
    cat.synced("a.png", 1, prompt="newer file")
    local = "/srv/media/forge-a/.versions/a.20260101T000000.000000Z.png"
    cat.infos[local] = info(prompt="older file")
    event = {
        "type": "file_versioned",
        "container": "forge-a",
        "path": "a.png",
        "local_path": local,
        "size": 55,
        "mtime": stamp(NOW - timedelta(days=3)),
        "sha256": None,
        "versioned_at": stamp(NOW - timedelta(days=2)),
    }
    cat.sink.deliver(event)
    cat.sink.deliver(event)
    rows = {r["prompt"]: r for r in cat.sink.find(CatalogQuery())}
    assert rows["newer file"]["versioned_at"] is None
    assert rows["older file"]["local_path"] == local
    assert len(rows) == 2


def test_search_does_not_wait_for_a_writer(cat: Catalog) -> None:
    """While another connection holds the write lock with uncommitted rows, a search
    answers at once from what is committed (WAL, a read-only connection of its own)."""
    cat.synced("a.png", prompt="committed words")
    writer = sqlite3.connect(cat.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO media (container, path, local_path, size, mtime, prompt)"
        " VALUES ('forge-a', 'b.png', '/b.png', 1, ?, 'committed words too')",
        (stamp(NOW),),
    )
    try:
        assert cat.paths(prompt="committed") == ["a.png"]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def v0_catalog(tmp_path: Path) -> Path:
    """tests/fixtures/catalog-v0.sqlite (written by round 1) with two rows that have
    generation metadata added, the way round 1 wrote them."""
    path = tmp_path / "catalog.sqlite"
    shutil.copy(FIXTURES / "catalog-v0.sqlite", path)
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO media (container, path, local_path, size, mtime, generator, prompt,"
        " negative_prompt, seed, model) VALUES ('forge-a', 'duck.png', '/m/duck.png', 5,"
        " '2026-06-01T00:00:00.000000Z', 'a1111', 'photo of a duck', 'blurry', 42, 'rv20')"
    )
    db.commit()
    db.close()
    return path


def v1_catalog(tmp_path: Path) -> Path:
    """A catalog at schema 1 (made by migration 1 alone), with a text seed past 2^63."""
    path = tmp_path / "catalog-v1.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO media (container, path, local_path, size, mtime, prompt, seed, model,"
        " versioned_at) VALUES ('comfy-1', 'x.png', '/m/.versions/x.png', 5,"
        " '2026-06-02T00:00:00.000000Z', 'a castle at night', ?, 'flux', '2026-06-03')",
        (str(2**64 - 2),),
    )
    db.close()
    return path


def test_catalog_from_schema_0_keeps_its_rows_and_makes_them_findable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrating the round-1 fixture keeps every row (ids given in order) and indexes
    their prompts; the schema is at the last version."""
    path = v0_catalog(tmp_path)
    made = Catalog(path, monkeypatch)
    try:
        assert made.paths() == ["duck.png", "b.png", "a.png"]  # a, b: same mtime, by id
        (duck,) = made.sink.find(CatalogQuery(prompt="duck blurry"))
        assert (duck["seed"], duck["model"], duck["loras"]) == (42, "rv20", None)
        assert made.paths(model="RV") == ["duck.png"]
    finally:
        made.sink.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    db.close()
    fts_consistent(path)


def test_catalog_from_schema_1_keeps_its_rows_and_makes_them_findable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema-1 catalog's rows (a version row, a text seed) are kept and findable by
    prompt and exact seed; opening it again changes nothing."""
    path = v1_catalog(tmp_path)
    for _ in range(2):
        made = Catalog(path, monkeypatch)
        try:
            (row,) = made.sink.find(CatalogQuery(prompt="castle", seed=2**64 - 2))
            assert (row["path"], row["versioned_at"]) == ("x.png", "2026-06-03")
        finally:
            made.sink.close()
    fts_consistent(path)


def test_a_newer_catalog_schema_is_refused(tmp_path: Path) -> None:
    """A catalog written by a newer forge-syncd is not touched."""
    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        CatalogSink("catalog", {"path": path})


def test_real_png_metadata_is_searchable(tmp_path: Path) -> None:
    """A PNG with A1111 infotext, delivered as the daemon does, is found by its prompt
    words, model and seed (no stand-in metadata reader)."""
    image = tmp_path / "00001.png"
    image.write_bytes(
        png(
            (
                b"tEXt",
                b"parameters\0a lighthouse in fog\nNegative prompt: people\n"
                b"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 987654321, Model: juggernautXL",
            )
        )
    )
    sink = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    try:
        sink.deliver(
            {
                "type": "file_synced",
                "container": "forge-a",
                "path": "00001.png",
                "local_path": str(image),
                "size": image.stat().st_size,
                "mtime": stamp(NOW),
                "sha256": None,
            }
        )
        query = CatalogQuery(prompt="Lighthouse FOG", model="juggernaut", seed=987654321)
        assert [r["path"] for r in sink.find(query)] == ["00001.png"]
        assert sink.find(CatalogQuery(prompt="people")) != []  # the negative prompt counts
    finally:
        sink.close()


# -- the control method's params and the command's lines ---------------------------------
def request(**params: Any) -> Request:
    return Request(7, "find", params)


def test_find_params_become_the_query() -> None:
    """Durations as text or seconds, every filter, the default limit."""
    query = find_query(
        request(prompt="duck", model="m", seed=2**64 - 1, lora="l", container="c", since="7d")
    )
    assert query == CatalogQuery("duck", "m", 2**64 - 1, "l", "c", 7 * 86400.0, 50)
    assert find_query(request(since=90, limit=1000)).since_s == 90.0
    assert find_query(request()) == CatalogQuery()


@pytest.mark.parametrize(
    "params",
    [
        {"prompt": 5},
        {"prompt": "  "},
        {"prompt": '*** "" -'},
        {"prompt": "x" * 1001},
        {"seed": "12"},
        {"seed": True},
        {"seed": 1.5},
        {"since": "7 days"},
        {"since": -1},
        {"limit": 0},
        {"limit": 1001},
        {"limit": "5"},
        {"container": ["a"]},
        {"colour": "red"},
    ],
)
def test_bad_find_params_are_bad_params(params: dict[str, Any]) -> None:
    """Each wrong param is refused with `bad_params` (the request id echoed)."""
    with pytest.raises(RequestError) as caught:
        find_query(request(**params))
    assert (caught.value.code, caught.value.request_id) == (BAD_PARAMS, 7)


def test_found_rows_are_bounded_to_one_response_line() -> None:
    """Long prompts are cut and rows stop before the response would pass the client's
    1 MiB line limit; `truncated` says so."""
    rows = [
        {"path": f"{i}.png", "prompt": "é" * 100_000, "negative_prompt": None} for i in range(40)
    ]
    kept, truncated = bounded_rows(rows)
    assert truncated and 0 < len(kept) < 40
    assert len(json.dumps({"files": kept}, ensure_ascii=False).encode()) <= MAX_FOUND_BYTES + 100
    assert bounded_rows(rows[:2]) == (
        [{**r, "prompt": "é" * 16384} for r in rows[:2]],
        False,
    )


def test_found_rows_show_remote_text_inertly() -> None:
    """One row a file (time, container, path, model, seed, prompt on one line); escapes and
    Rich markup in remote text come out as plain escaped characters, piped in full."""
    import io

    from forge_syncd.cli.commands.find import COLUMNS, row
    from forge_syncd.cli.table import render
    from forge_syncd.cli.term import Out

    found = {
        "mtime": "2026-12-01T10:11:12.000000Z",
        "container": "forge-a",
        "path": "a\x1b[31m.png",
        "model": "[bold]m[/bold]",
        "seed": 2**64 - 1,
        "prompt": "line one\nline two " + "x" * 200,
        "versioned_at": "2026-12-02T00:00:00.000000Z",
    }
    out = Out(utc=True, stdout=io.StringIO(), stderr=io.StringIO())
    _header, line = render(out, COLUMNS, [row(out, found)])
    assert " ".join(line.split()).startswith(
        "2026-12-01 10:11:12 UTC forge-a a\\x1b[31m.png (earlier version)"
    )
    assert "[bold]m[/bold]" in line and str(2**64 - 1) in line
    assert line.endswith("line one line two " + "x" * 200)
    assert "\x1b" not in line.replace("\\x1b", "")


# -- backfill ------------------------------------------------------------------------------
def test_backfill_indexes_files_and_versions_and_twice_changes_nothing(tmp_path: Path) -> None:
    """Files the manifest records (synced, purged) and kept versions get rows with their
    metadata (the purged one marked, the version at its .versions/ place); a missing file
    is skipped; a second backfill leaves the catalog byte-for-byte the same."""
    media, state = tmp_path / "media", tmp_path / "state"
    folder = media / "forge-a"
    (folder / ".versions").mkdir(parents=True)
    infotext = b"parameters\0%s\nSteps: 20, Seed: 5, Model: rv"
    files = {
        b"now.png": png((b"tEXt", infotext % b"current lighthouse")),
        b"gone.png": png((b"tEXt", infotext % b"purged lighthouse")),
        b"missing.png": png((b"tEXt", infotext % b"missing lighthouse")),
    }
    for name, data in files.items():
        if name != b"missing.png":
            (folder / os.fsdecode(name)).write_bytes(data)
    old = png((b"tEXt", infotext % b"earlier lighthouse"))
    version_path = b".versions/now.20260101T000000.000000Z.png"
    (folder / os.fsdecode(version_path)).write_bytes(old)
    manifest = Manifest.open(state)
    move = VersionMove(
        b"now.png",
        version_path,
        len(old),
        1_700_000_000 * 10**9,
        None,
        "2026-01-01T00:00:00.000000Z",
    )
    manifest.versions.record_pending("forge-a", [move])
    synced = [
        SyncedFile(name, len(data), 1_800_000_000 * 10**9, None) for name, data in files.items()
    ]
    manifest.files.record_synced("forge-a", synced, versions=[move])
    manifest.files.record_purged(
        "forge-a", [b"gone.png"], [records.file_purged("forge-a", "r", b"gone.png", 1)]
    )
    manifest.close()
    path = tmp_path / "catalog.sqlite"

    def run() -> backfill.BackfillCounts:
        sink = CatalogSink("catalog", {"path": path})
        try:
            return backfill.backfill(
                [("catalog", sink)], backfill.library_files(state, media, ["forge-a"])
            )
        finally:
            sink.close()

    counts = run()
    assert (counts.files, counts.with_metadata, counts.with_error, counts.skipped) == (3, 3, 0, 1)
    db = sqlite3.connect(path)
    dump = list(db.iterdump())
    rows = {r[0]: r[1:] for r in db.execute("SELECT prompt, versioned_at, purged_at FROM media")}
    db.close()
    assert rows["earlier lighthouse"][0] == "2026-01-01T00:00:00.000000Z"
    assert rows["current lighthouse"] == (None, None)
    assert rows["purged lighthouse"][1] is not None
    assert set(rows) == {"earlier lighthouse", "current lighthouse", "purged lighthouse"}
    assert run().files == 3
    db = sqlite3.connect(path)
    assert list(db.iterdump()) == dump
    db.close()
    assert "3 files indexed into catalog" in counts.summary()
