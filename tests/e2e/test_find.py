"""`forge-syncctl find` against a running daemon with a catalog sink and a real sshd, and
`forge-syncd --backfill` on a library synced without a catalog (installed commands as
subprocesses, the real fixtures with the metadata their front ends wrote)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.test_events import with_ingest
from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import REAL_MEDIA, write_file

DUCK = "automatic1111_cropped.png"  # "photo of a duck", seed 235284042 (also as .jpg)
DUCKS = {f"out/{DUCK}", "out/automatic1111_cropped.jpg"}
WOMAN = "img2img_cropped.png"  # "photograph of victorian woman with wings, ..."


def remote_with_fixtures(remote: Path) -> None:
    for fixture in REAL_MEDIA.glob("*.*g"):
        write_file(remote / "out" / fixture.name, fixture.read_bytes(), 1.7e9)
    write_file(remote / "out" / "plain.png", b"\x89PNG\r\n\x1a\n", 1.7e9)


def ctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def found(socket: Path, *args: str) -> list[dict[str, Any]]:
    result = ctl(socket, "find", *args, "--json")
    assert result.returncode == 0, result.stderr
    files: list[dict[str, Any]] = json.loads(result.stdout)["files"]
    return files


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_find_searches_the_daemons_catalog(sshd: SshdServer, tmp_path: Path) -> None:
    """Files with real metadata synced by the daemon are found by prompt words, seed,
    model and container through `forge-syncctl find`, as JSON and as lines; bad params
    are a usage error."""
    remote = tmp_path / "remote"
    remote_with_fixtures(remote)
    config = write_config(tmp_path, sshd, remote, interval="1h", watch="false")
    with_ingest(config, f"{{name: catalog, type: catalog, path: {tmp_path / 'catalog.sqlite'}}}")
    daemon = start_daemon(config)
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(socket.exists, what="the control socket")
        wait_until(lambda: len(found(socket, "--limit", "100")) == 6, timeout=60, what="six rows")
        ducks = found(socket, "--prompt", "Duck photo")
        assert {(r["path"], r["seed"], r["generator"]) for r in ducks} == {
            (path, 235284042, "a1111") for path in DUCKS
        }
        assert ducks[0]["model"] == "realistic_realisticVisionV20_v20"
        assert [r["path"] for r in found(socket, "--prompt", "victorian wings")] == [f"out/{WOMAN}"]
        assert [r["path"] for r in found(socket, "--seed", "280823642470253")] == [f"out/{WOMAN}"]
        by_model = found(socket, "--model", "REALISTIC", "--since", "3650d")
        assert {r["path"] for r in by_model} == DUCKS
        assert found(socket, "--prompt", 'duck" OR *', "--container", "nope") == []
        lines = ctl(socket, "find", "--prompt", "duck")
        assert lines.returncode == 0
        assert f"forge-a    out/{DUCK}" in lines.stdout and "photo of a duck" in lines.stdout
        bad = ctl(socket, "find", "--since", "soon")
        assert bad.returncode == 2 and "since" in bad.stderr
    finally:
        stop(daemon)


def test_find_without_a_catalog_says_how_to_get_one(sshd: SshdServer, tmp_path: Path) -> None:
    """A daemon with no catalog or postgres sink answers `find` with an error: exit 1 and
    the message naming what to configure."""
    remote = tmp_path / "remote"
    remote_with_fixtures(remote)
    config = write_config(tmp_path, sshd, remote, interval="1h", watch="false")
    with_ingest(config, f"{{name: archive, type: jsonl, path: {tmp_path / 'events.jsonl'}}}")
    daemon = start_daemon(config)
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(socket.exists, what="the control socket")
        result = ctl(socket, "find", "--prompt", "duck")
    finally:
        stop(daemon)
    assert result.returncode == 1
    assert "no catalog: configure a catalog or postgres sink" in result.stderr


def catalog_dump(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def test_backfill_indexes_a_library_synced_without_a_catalog(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """A library synced by `--once` with no catalog, then `--backfill` with a catalog
    configured: every file gets its row and metadata and is findable; a second backfill
    changes nothing; without a catalog sink `--backfill` is refused."""
    remote = tmp_path / "remote"
    remote_with_fixtures(remote)
    config = write_config(tmp_path, sshd, remote)
    assert forge_syncd("--once", "--config", str(config)).returncode == 0
    refused = forge_syncd("--backfill", "--config", str(config))
    assert refused.returncode == 2 and "no catalog" in refused.stderr
    catalog = tmp_path / "catalog.sqlite"
    with_ingest(config, f"{{name: catalog, type: catalog, path: {catalog}}}")
    first = forge_syncd("--backfill", "--container", "forge-a", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "backfill: 6 files indexed into catalog (5 with metadata, 0 with metadata_error" in (
        first.stdout
    )
    dump = catalog_dump(catalog)
    second = forge_syncd("--backfill", "--config", str(config))
    assert second.returncode == 0, second.stderr
    assert catalog_dump(catalog) == dump
    db = sqlite3.connect(catalog)
    rows = dict(db.execute("SELECT path, seed FROM media").fetchall())
    db.close()
    assert rows[f"out/{DUCK}"] == 235284042 and rows["out/plain.png"] is None
    daemon = start_daemon(config)
    socket = tmp_path / "run" / "control.sock"
    try:
        wait_until(socket.exists, what="the control socket")
        assert {r["path"] for r in found(socket, "--prompt", "duck")} == DUCKS
    finally:
        stop(daemon)
    unknown = forge_syncd("--backfill", "--container", "nope", "--config", str(config))
    assert unknown.returncode == 2 and "nope" in unknown.stderr
