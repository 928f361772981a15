"""Durable events delivered to real sinks by a running daemon, through failures and kill -9."""

from __future__ import annotations

import http.server
import json
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from forge_syncd.control.client import ControlClient
from tests.support.cli import forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import REAL_MEDIA, write_file


def with_ingest(config: Path, *sinks: str) -> None:
    config.write_text(config.read_text() + "ingest:\n" + "".join(f"  - {s}\n" for s in sinks))


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def remote_tree(root: Path, count: int) -> None:
    for i in range(count):
        write_file(root / "day" / f"{i:03d}.png", os.urandom(2000 + i), 1.7e9)


def stop(process: Any) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_jsonl_sink_gets_exactly_one_file_synced_per_file(sshd: SshdServer, tmp_path: Path) -> None:
    """In normal operation the jsonl sink holds one file_synced per file, ids increasing,
    then batch_synced and sync_complete; a cleanup adds file_purged and cleanup_complete."""
    remote = tmp_path / "remote"
    remote_tree(remote, 30)
    config = write_config(tmp_path, sshd, remote, interval="1s")
    config.write_text(
        config.read_text().replace(
            "    ssh: {port:",
            "    cleanup: {enabled: true, older_than: 1h, interval: 2s}\n    ssh: {port:",
        )
    )
    events = tmp_path / "events.jsonl"
    with_ingest(config, f"{{name: archive, type: jsonl, path: {events}}}")
    daemon = start_daemon(config)
    try:
        wait_until(
            lambda: sum(e["type"] == "file_purged" for e in jsonl(events)) == 30,
            timeout=60,
            what="30 purges delivered",
        )
    finally:
        stop(daemon)
    got = jsonl(events)
    synced = [e for e in got if e["type"] == "file_synced"]
    assert sorted(e["path"] for e in synced) == [f"day/{i:03d}.png" for i in range(30)]
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    assert len({e["id"] for e in got}) == len(got)
    first = synced[0]
    assert {
        "id",
        "type",
        "ts",
        "container",
        "path",
        "local_path",
        "size",
        "mtime",
        "sha256",
    } <= first.keys()
    assert (
        Path(first["local_path"]).read_bytes()
        == (remote.parent / "media" / "forge-a" / first["path"]).read_bytes()
    )
    types = {e["type"] for e in got}
    assert {"batch_synced", "sync_complete", "cleanup_complete"} <= types


def test_failing_sink_still_receives_every_event_in_order(sshd: SshdServer, tmp_path: Path) -> None:
    """An exec sink that fails its first three calls receives every event, in order, and
    shows as pending in status and metrics meanwhile."""
    remote = tmp_path / "remote"
    remote_tree(remote, 5)
    counter, received = tmp_path / "calls", tmp_path / "received.jsonl"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"""#!/bin/sh
n=$(cat {counter} 2>/dev/null || echo 0); echo $((n + 1)) > {counter}
[ "$n" -lt 3 ] && {{ echo "not yet ($n)" >&2; exit 1; }}
cat >> {received}; echo >> {received}
""")
    hook.chmod(0o755)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    with_ingest(config, f"{{name: hook, type: exec, command: [{hook}], timeout: 10s}}")
    daemon = start_daemon(config)
    try:
        wait_until(lambda: (tmp_path / "run" / "control.sock").exists())
        wait_until(
            lambda: sum(e["type"] == "file_synced" for e in jsonl(received)) == 5,
            timeout=60,
            what="delivery after the failures",
        )
        with ControlClient(tmp_path / "run" / "control.sock") as client:
            sinks = client.call("status")["sinks"]
        assert sinks[0]["name"] == "hook"
    finally:
        stop(daemon)
    got = jsonl(received)
    assert [e["id"] for e in got] == sorted({e["id"] for e in got})
    assert int(counter.read_text()) >= 4


class Collector(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Collector.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def webhook_port() -> Iterator[int]:
    port = free_port()
    Collector.received = []
    yield port


def serve_webhook(port: int) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", port), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_webhook_down_across_kill_9_loses_nothing(
    sshd: SshdServer, tmp_path: Path, webhook_port: int
) -> None:
    """Files synced while the webhook is down and the daemon is kill -9ed: after a restart
    with the webhook up, a real HTTP server receives every file_synced."""
    remote = tmp_path / "remote"
    remote_tree(remote, 12)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    with_ingest(
        config,
        f"{{name: web, type: webhook, url: 'http://127.0.0.1:{webhook_port}/media', timeout: 2s}}",
    )
    daemon = start_daemon(config)
    wait_until(
        lambda: len(list((tmp_path / "media" / "forge-a" / "day").glob("*.png"))) == 12,
        what="the sync while the webhook is down",
    )
    wait_until(
        lambda: "sink_delivery_failed" in (tmp_path / "log" / "forge-syncd.jsonl").read_text(),
        what="a failed delivery",
    )
    daemon.kill()
    daemon.wait()
    server = serve_webhook(webhook_port)
    daemon = start_daemon(config)
    try:
        wait_until(
            lambda: sum(e["type"] == "file_synced" for e in Collector.received) >= 12,
            timeout=60,
            what="redelivery after restart",
        )
    finally:
        stop(daemon)
        server.shutdown()
    paths = {e["path"] for e in Collector.received if e["type"] == "file_synced"}
    assert paths == {f"day/{i:03d}.png" for i in range(12)}


def test_catalog_rows_carry_the_generation_metadata(sshd: SshdServer, tmp_path: Path) -> None:
    """Syncing the real fixtures with --once fills the catalog with their prompts, seeds and
    models; a file without metadata still gets its row."""
    remote = tmp_path / "remote"
    for fixture in REAL_MEDIA.glob("*.*g"):
        write_file(remote / fixture.name, fixture.read_bytes(), 1.7e9)
    write_file(remote / "plain.webp", b"RIFF not really", 1.7e9)
    config = write_config(tmp_path, sshd, remote)
    catalog = tmp_path / "catalog.sqlite"
    with_ingest(config, f"{{name: catalog, type: catalog, path: {catalog}}}")
    result = forge_syncd("--once", "--config", str(config))
    assert result.returncode == 0, result.stdout
    db = sqlite3.connect(catalog)
    rows = {
        r[0]: r[1:]
        for r in db.execute("SELECT path, generator, seed, steps, model, prompt, size FROM media")
    }
    assert rows["automatic1111_cropped.png"][:4] == (
        "a1111",
        235284042,
        15,
        "realistic_realisticVisionV20_v20",
    )
    assert rows["automatic1111_cropped.jpg"][:2] == ("a1111", 235284042)
    assert rows["img2img_cropped.png"][:4] == (
        "comfyui",
        280823642470253,
        20,
        "v1-5-pruned-emaonly.ckpt",
    )
    assert rows["plain.webp"][:2] == (None, None) and rows["plain.webp"][5] == 15


def test_python_entry_point_sink(sshd: SshdServer, tmp_path: Path) -> None:
    """A sink installed as an entry point in group forge_syncd.sinks receives the events."""
    plugins = tmp_path / "plugins"
    (plugins / "mysink-1.0.dist-info").mkdir(parents=True)
    (plugins / "mysink-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mysink\nVersion: 1.0\n"
    )
    (plugins / "mysink-1.0.dist-info" / "entry_points.txt").write_text(
        "[forge_syncd.sinks]\nmysink = mysink:Sink\n"
    )
    (plugins / "mysink.py").write_text("""
import json
class Sink:
    def __init__(self, name, options):
        self.out = open(options["out"], "a")
    def deliver(self, event):
        self.out.write(json.dumps(event) + "\\n")
        self.out.flush()
    def close(self):
        self.out.close()
""")
    remote = tmp_path / "remote"
    remote_tree(remote, 3)
    config = write_config(tmp_path, sshd, remote)
    out = tmp_path / "plugin-events.jsonl"
    with_ingest(
        config, f"{{name: mine, type: python, entry_point: mysink, options: {{out: {out}}}}}"
    )
    os.environ["PYTHONPATH"] = str(plugins)
    try:
        result = forge_syncd("--once", "--config", str(config))
    finally:
        del os.environ["PYTHONPATH"]
    assert result.returncode == 0, result.stdout
    assert sum(e["type"] == "file_synced" for e in jsonl(out)) == 3
