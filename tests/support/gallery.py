"""A real `forge-sync-gallery` process for tests, over a catalog the real `catalog` sink made.

`Library` copies media into a media_root, delivers `file_synced` events for them to a real
CatalogSink (which reads their metadata) and writes a config naming that sink; `Gallery`
starts the installed `forge-sync-gallery` on a free 127.0.0.1 port and stops it by its PID.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from forge_syncd.events.sinks.catalog import CatalogSink
from tests.support.sshd import free_port

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).parent.parent / "fixtures"
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOSTILE_PROMPT = (
    "</bdi><script>window.__pwned=1;document.title='pwned'</script>"
    '"><img src=x onerror="window.__pwned=2"> \u202egnp.exe\u202c zanzibarquux'
)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def a1111_png(path: Path, prompt: str, seed: int, size: int = 64) -> Path:
    """A small PNG with A1111 `parameters` text (prompt, seed, sampler, model)."""
    info = PngInfo()
    info.add_text(
        "parameters",
        f"{prompt}\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7,"
        f" Seed: {seed}, Size: {size}x{size}, Model: hostile_model",
    )
    Image.new("RGB", (size, size), (seed % 256, 90, 140)).save(path, pnginfo=info)
    return path


@dataclass
class Library:
    root: Path
    media: Path = field(init=False)
    catalog: Path = field(init=False)
    sink: CatalogSink = field(init=False)
    clock: int = 0

    def __post_init__(self) -> None:
        self.media = self.root / "media"
        self.catalog = self.root / "state" / "catalog.sqlite"
        self.media.mkdir(parents=True, exist_ok=True)
        self.sink = CatalogSink("catalog", {"path": self.catalog})

    def add(self, source: Path, container: str, name: str, sha: bool = True) -> dict[str, object]:
        """Copy `source` to <media>/<container>/<name> and deliver its file_synced event;
        each file is a minute newer than the one before."""
        target = self.media / container / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.clock += 1
        data = target.read_bytes()
        event: dict[str, object] = {
            "type": "file_synced",
            "container": container,
            "path": name,
            "local_path": str(target),
            "size": len(data),
            "mtime": stamp(START + timedelta(minutes=self.clock)),
            "sha256": hashlib.sha256(data).hexdigest() if sha else None,
        }
        self.sink.deliver(event)
        return event

    def config(self, gallery_yaml: str = "") -> Path:
        text = f"""\
media_root: {self.media}
state_dir: {self.root}/state
metrics: {{listen: null}}
control: {{socket: {self.root}/run/control.sock}}
ingest:
  - {{name: catalog, type: catalog, path: {self.catalog}}}
{gallery_yaml}"""
        path = self.root / "forge-sync.yaml"
        path.write_text(text)
        return path

    def row_id(self, container: str, name: str) -> int:
        import sqlite3

        db = sqlite3.connect(self.catalog)
        try:
            found = db.execute(
                "SELECT id FROM media WHERE container = ? AND path = ? AND versioned_at IS NULL",
                (container, name),
            ).fetchone()
        finally:
            db.close()
        return int(found[0])


class Gallery:
    """The installed forge-sync-gallery, serving one config on 127.0.0.1:<port>."""

    def __init__(self, library: Library, thumbnails: Path, extra: str = "") -> None:
        self.port = free_port()
        self.thumbnails = thumbnails
        self.config = library.config(
            f"gallery: {{listen: 127.0.0.1:{self.port}, thumbnails: {thumbnails}{extra}}}\n"
        )
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Gallery:
        self.process = subprocess.Popen(
            [str(BIN / "forge-sync-gallery"), "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"forge-sync-gallery exited {self.process.returncode}: {out}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("forge-sync-gallery did not listen within 30 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """GET `path` exactly as given (no normalisation); return status, headers, body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
