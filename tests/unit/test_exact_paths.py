"""Exact paths of files whose names are not UTF-8 (issue 23, item 15), unit tier: events
carry the bytes and give them back, the control protocol writes them as JSON, and the
SQLite catalog stores them (and repairs a row written by an earlier round)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.control.protocol import json_text, ok_line
from forge_syncd.events.sinks.catalog import CatalogSink
from forge_syncd.library.events import exact_local_path, file_synced, local_path_fields
from forge_syncd.library.manifest import SyncedFile

DUCK = (Path(__file__).resolve().parents[1] / "fixtures" / "real-media").joinpath(
    "automatic1111_cropped.png"
)


@given(st.binary(min_size=1, max_size=300).filter(lambda b: b"\0" not in b))
def test_any_local_path_comes_back_exactly_from_its_event(name: bytes) -> None:
    """Whatever the bytes of a path, `exact_local_path` gives them back from the event
    (through the outbox's JSON); `local_path_b64` is there only when `local_path` is not
    already the exact path, so UTF-8 paths' events are unchanged."""
    local = b"/lib/forge-a/" + name
    fields = local_path_fields(local)
    event = json.loads(json.dumps(fields))
    assert exact_local_path(event) == local
    try:
        local.decode("utf-8")
        assert set(fields) == {"local_path"} and fields["local_path"] == local.decode()
    except UnicodeDecodeError:
        assert set(fields) == {"local_path", "local_path_b64"}


def test_a_malformed_b64_falls_back_to_the_shown_path() -> None:
    """An event whose local_path_b64 is not base64 (a hand-made event) is read by its
    local_path rather than failing the delivery."""
    event = {"local_path": "/lib/a.png", "local_path_b64": "not base64!"}
    assert exact_local_path(event) == b"/lib/a.png"


def test_a_surrogate_escaped_path_goes_over_the_socket_as_json() -> None:
    """A response holding a path kept by surrogateescape is one UTF-8 line of valid JSON
    (the byte as `\\udcXX`), read back to the same text; other text stays as it is."""
    path = b"/lib/caf\xe9 \xe2\x9c\x93.png".decode("utf-8", "surrogateescape")
    line = ok_line(1, {"local_path": path})
    line.decode("utf-8")  # strict: no raw surrogate
    assert b"\\udce9" in line and "\u2713".encode() in line
    assert json.loads(line)["result"]["local_path"] == path
    assert json.loads(json_text({"p": path}, indent=2)) == {"p": path}


def test_the_catalog_repairs_a_row_written_with_the_shown_path(tmp_path: Path) -> None:
    """A row written by round 2 (local_path the escaped text, no metadata: the file was
    never found) is repaired by the next event of the file (as `--backfill` replays it):
    local_path becomes the exact bytes, the metadata is read; `find` returns the path."""
    folder = os.fsencode(tmp_path / "media" / "forge-a")
    os.makedirs(folder)
    with open(folder + b"/caf\xe9.png", "wb") as handle:
        handle.write(DUCK.read_bytes())
    info = os.stat(folder + b"/caf\xe9.png")
    synced = SyncedFile(b"caf\xe9.png", info.st_size, info.st_mtime_ns, None)
    event = file_synced("forge-a", "r1", folder, synced)
    round_2 = {k: v for k, v in event.items() if k != "local_path_b64"}
    sink = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    try:
        sink.deliver(round_2)
        before = sink.find(CatalogQuery())
        sink.deliver(event)
        sink.deliver(event)
        after = sink.find(CatalogQuery(prompt="duck"))
    finally:
        sink.close()
    assert [(r["local_path"], r["prompt"]) for r in before] == [(event["local_path"], None)]
    (row,) = after
    assert os.fsencode(row["local_path"]) == folder + b"/caf\xe9.png"
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        stored = db.execute("SELECT local_path, typeof(local_path), path FROM media").fetchall()
    assert stored == [(folder + b"/caf\xe9.png", "blob", "caf\\xe9.png")]
