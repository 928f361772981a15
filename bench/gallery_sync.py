"""A sync of 1,000 images with forge-sync-gallery running (and making the thumbnails of what
lands) against the same sync without it (issue 28: <= 1.05x).

    python -m bench.gallery_sync [--files 1000] [--rounds 3] [--work DIR]

Writes `--files` typical SD PNGs (1024x1024, ~1.8 MB, an A1111 `parameters` chunk each;
30 distinct pictures, each copy made unique by its own text chunk, so every file has its
own sha256 and thumbnail) into a `transport: local` container, then alternates, `--rounds`
times: `forge-syncd --once` into a fresh library with a `catalog` sink, alone; and the same
with a real `forge-sync-gallery` started first on that catalog (its background worker makes
the thumbnail of every row as it lands: one thread, nice 10, PNGs through libvips when
pyvips is installed). Prints each variant's median sync time, the ratio, and how many
thumbnails the gallery had made when the sync ended (at nice 10 on a busy machine it mostly
waits: that is the point).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from bench import as_installed
from bench.gallery_thumbnails import make_png
from forge_syncd.events.sinks.catalog import CatalogSink
from tests.support.sshd import free_port

BIN = Path(sys.executable).parent
DISTINCT = 30
CONFIG = """\
media_root: {run}/media
state_dir: {run}/state
log: {{level: warning}}
control: {{socket: {run}/control.sock}}
metrics: {{listen: null}}
ingest:
  - {{name: catalog, type: catalog, path: {run}/state/catalog.sqlite}}
gallery: {{listen: 127.0.0.1:{port}, thumbnails: {run}/thumbnails}}
containers:
  - name: bench
    transport: local
    kind: generic
    root: {root}
    sync: {{settle: 0s, interval: 1h, watch: false, include: ["*"]}}
"""


def text_chunk(key: str, value: str) -> bytes:
    body = key.encode() + b"\0" + value.encode()
    crc = struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return struct.pack(">I", len(body)) + b"tEXt" + body + crc


def write_source(root: Path, files: int) -> int:
    """`files` PNGs in `root` (kept between runs of the bench); return their total bytes."""
    root.mkdir(parents=True, exist_ok=True)
    pictures = []
    for index in range(DISTINCT):
        picture = root.parent / f"picture-{index}.png"
        if not picture.exists():
            make_png(picture, index)
        pictures.append(picture.read_bytes())
    total = 0
    for index in range(files):
        path = root / f"{index:05d}.png"
        if not path.exists():
            data = pictures[index % DISTINCT]
            parameters = (
                f"a lighthouse at dusk, picture {index}\nNegative prompt: blurry\n"
                f"Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: {index}, Size: 1024x1024,"
                " Model: bench_model"
            )
            path.write_bytes(data[:33] + text_chunk("parameters", parameters) + data[33:])
        total += path.stat().st_size
    return total


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def one_sync(work: Path, root: Path, gallery: bool) -> tuple[float, int | None]:
    """One fresh `forge-syncd --once`; with `gallery`, forge-sync-gallery runs on its
    catalog throughout. Return (sync seconds, thumbnails the gallery had made when the sync
    ended, or None)."""
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    (run / "state").mkdir(parents=True)
    (run / "media").mkdir()
    port = free_port()
    config = run / "forge-sync.yaml"
    config.write_text(CONFIG.format(run=run, root=root, port=port))
    CatalogSink("catalog", {"path": run / "state" / "catalog.sqlite"}).close()  # its schema
    viewer = None
    if gallery:
        viewer = subprocess.Popen(
            [str(BIN / "forge-sync-gallery"), "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not listening(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(FOLLOW_SETTLE)  # its worker has read the (empty) catalog's last id
    subprocess.run(["sync"], check=False)
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "forge-syncd"), "--once", "--config", str(config)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    took = time.perf_counter() - started
    made = None
    if viewer is not None:
        made = sum(1 for _ in (run / "thumbnails").glob("*/*.webp"))
        viewer.send_signal(signal.SIGTERM)
        viewer.wait(timeout=30)
    return took, made


FOLLOW_SETTLE = 3.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    as_installed()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gallery-sync-"))
    root = work / "source"
    total = write_source(root, args.files)
    print(
        f"{args.files} PNGs, {total / 1e9:.2f} GB; load average {os.getloadavg()[0]:.1f}"
        f" on {os.cpu_count()} cores"
    )
    alone: list[float] = []
    shown: list[float] = []
    made: list[int] = []
    for round_ in range(args.rounds):
        for gallery in (round_ % 2 == 1, round_ % 2 == 0):  # alternate which goes first
            took, count = one_sync(work, root, gallery)
            (shown if gallery else alone).append(took)
            if count is not None:
                made.append(count)
            label = "with gallery   " if gallery else "without gallery"
            extra = f", {count} thumbnails made meanwhile" if count is not None else ""
            print(f"  round {round_ + 1} {label} {took:6.1f} s{extra}", flush=True)
    ratio = statistics.median(shown) / statistics.median(alone)
    print(
        f"sync of {args.files}: without the gallery {statistics.median(alone):.1f} s, with it"
        f" {statistics.median(shown):.1f} s (median of {args.rounds}): ratio {ratio:.3f}"
        f" (target <= 1.05); thumbnails made during the sync: {made};"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    shutil.rmtree(work / "run", ignore_errors=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
