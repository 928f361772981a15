"""The catalog sink on hostile and unusual files (unit tier: events delivered straight to
the sink, real files on disk): every synced file gets its row, what could not be read is
in `metadata_error`, and a ComfyUI seed past SQLite's INTEGER is kept exactly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.catalog import CatalogSink
from tests.unit.test_metadata import png


def synced(path: Path, name: str) -> dict[str, Any]:
    return {
        "type": "file_synced",
        "container": "comfy-1",
        "path": name,
        "local_path": str(path),
        "size": path.stat().st_size,
        "mtime": "2026-12-01T00:00:00.000000Z",
        "sha256": None,
    }


def rows(db_path: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(db_path)
    try:
        return db.execute(
            "SELECT path, generator, seed, typeof(seed), metadata_error FROM media ORDER BY id"
        ).fetchall()
    finally:
        db.close()


def test_unreadable_metadata_still_gets_a_row_with_the_reason(tmp_path: Path) -> None:
    """A backtracking-bait infotext, a missing file and a file that is not a PNG each get
    their row; the reason is in metadata_error, the delivery never fails."""
    bait = tmp_path / "bait.png"
    bait.write_bytes(png((b"tEXt", b"parameters\0" + b"Steps: 20, " + b"word " * 300_000)))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40)
    sink = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    try:
        sink.deliver(synced(bait, "bait.png"))
        sink.deliver(synced(broken, "broken.png"))
        event = synced(bait, "gone.png")
        event["local_path"] = str(tmp_path / "gone.png")
        sink.deliver(event)
    finally:
        sink.close()
    got = {r[0]: r[4] for r in rows(tmp_path / "catalog.sqlite")}
    assert set(got) == {"bait.png", "broken.png", "gone.png"}
    assert got["gone.png"] is not None and got["gone.png"].startswith("unreadable")
    assert got["broken.png"] is not None


def test_a_comfyui_seed_above_2_63_is_kept_exactly(tmp_path: Path) -> None:
    """ComfyUI draws seeds up to 2^64 - 1; SQLite's INTEGER holds 2^63 - 1: such a seed is
    stored as its exact decimal text (the delivery used to fail with OverflowError)."""
    seed = 2**64 - 1
    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": seed, "steps": 20, "cfg": 7, "sampler_name": "euler"},
        }
    }
    image = tmp_path / "ComfyUI_00001_.png"
    image.write_bytes(png((b"tEXt", b"prompt\0" + json.dumps(graph).encode())))
    small = tmp_path / "ComfyUI_00002_.png"
    graph["3"]["inputs"]["seed"] = 42
    small.write_bytes(png((b"tEXt", b"prompt\0" + json.dumps(graph).encode())))
    sink = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    try:
        sink.deliver(synced(image, image.name))
        sink.deliver(synced(small, small.name))
    finally:
        sink.close()
    assert [(r[2], r[3]) for r in rows(tmp_path / "catalog.sqlite")] == [
        (str(seed), "text"),
        (42, "integer"),
    ]


def test_a_pruned_version_drops_its_row_and_keeps_the_current_one(tmp_path: Path) -> None:
    """`keep_versions` deletes an old version's file: the `version_pruned` event it emits
    (from the manifest's outbox, in the same transaction) drops that version's catalog row,
    and only that one; delivered twice, nothing more changes (at least once)."""
    from forge_syncd.library.manifest import Manifest, VersionMove
    from forge_syncd.library.prune import Pruner
    from forge_syncd.library.versions import Versions
    from tests.unit.test_versions import Log

    container_dir = tmp_path / "media" / "comfy-1"
    (container_dir / ".versions").mkdir(parents=True)
    current = container_dir / "a.png"
    current.write_bytes(png())
    kept = container_dir / ".versions" / "a.20260101T000000.000000Z.png"
    kept.write_bytes(png())
    manifest = Manifest.open(tmp_path / "state")
    move = VersionMove(
        b"a.png",
        kept.relative_to(container_dir).as_posix().encode(),
        8,
        0,
        None,
        "2026-01-01T00:00:00.000000Z",
    )
    manifest.versions.record_pending("comfy-1", [move])
    manifest.files.record_synced("comfy-1", [], versions=[move])
    sink = CatalogSink("catalog", {"path": tmp_path / "catalog.sqlite"})
    try:
        sink.deliver(synced(current, "a.png"))  # the first file: its row then follows it
        version = synced(kept, "a.png")
        version.update(type="file_versioned", versioned_at=move.versioned_at)
        sink.deliver(version)
        sink.deliver(synced(current, "a.png"))  # the file that took its place
        assert len(rows(tmp_path / "catalog.sqlite")) == 2
        versions = Versions(manifest, "comfy-1", bytes(container_dir), "run", Log())
        assert Pruner(versions).prune(0.0) == 1
        [event] = [e for e in manifest.outbox.after(0) if e["type"] == "version_pruned"]
        assert event["version_path"] == move.version_path.decode()
        sink.deliver(event)
        sink.deliver(event)
    finally:
        sink.close()
        manifest.close()
    assert [r[0] for r in rows(tmp_path / "catalog.sqlite")] == ["a.png"]
    assert not kept.exists() and current.exists()
