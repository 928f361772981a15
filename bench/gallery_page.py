"""The gallery's first page at 350,000 rows in headless Chromium (issue 28: < 1 s).

    python -m bench.gallery_page [--rows 350000] [--runs 5] [--work DIR]

Builds (once per --work) a catalog of `--rows` rows with bench/catalog.py's rows, gives each
a sha256 and puts a real thumbnail (a 512 px WebP of a typical 1024² PNG, ~45 KB) in the
cache for every row of the first page, starts the real `forge-sync-gallery` on it, and
loads `/` in Debian's Chromium (tests/support/browser.py, a window of 1400x2000: the page's
60 cards and the next 60, which its script fetches at once, are all on screen: 120
thumbnails, none waiting for lazy loading). A run's time is on the Navigation Timing API's
clock: from navigation start to the poll (every 20 ms: an upper bound) that finds the load
event over and 120 thumbnails decoded; its parts from Navigation and Resource Timing. Each
round starts the gallery and first waits for its answer to /api/facets (it counts the
facets as it starts: a first page asked sooner waits for that; printed). Cold: a new
browser, its cache empty, on that just started gallery. Warm: the same page again, `--runs`
times (the HTML asked again; thumbnails from the browser's cache: they are immutable).
Prints the page's time and its parts: the HTML's server time (responseStart -
requestStart), the HTML done, the load event, the next page's JSON asked and done, the last
thumbnail (all from navigation start), and the thumbnails counted.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from bench import as_installed
from bench.catalog import RowMaker, build_catalog
from bench.gallery_thumbnails import make_png
from forge_syncd.gallery.thumbs import render
from tests.support.browser import Browser
from tests.support.sshd import free_port

BIN = Path(sys.executable).parent
SHOWN = 120  # the page's 60 cards and the next 60 its script fetches (the window holds both)
TIMING = """
const nav = performance.getEntriesByType("navigation")[0];
const thumbs = performance.getEntriesByType("resource").filter(e => e.name.includes("/thumb/"));
const images = Array.from(document.querySelectorAll("#grid img"));
return {
  ready: document.readyState === "complete" && images.length >= arguments[0]
    && images.every(i => i.complete && i.naturalWidth > 0),
  images: images.length,
  server: nav.responseStart - nav.requestStart,
  html: nav.responseEnd,
  load: nav.loadEventEnd,
  thumbs: thumbs.length,
  cached: thumbs.filter(e => e.transferSize === 0).length,
  lastThumb: Math.max(0, ...thumbs.map(e => e.responseEnd)),
  seen: performance.now(),
  nextAsked: Math.max(0, ...performance.getEntriesByType("resource")
    .filter(e => e.name.includes("/api/search")).map(e => e.startTime)),
  nextPage: Math.max(0, ...performance.getEntriesByType("resource")
    .filter(e => e.name.includes("/api/search")).map(e => e.responseEnd)),
};
"""


def prepare(work: Path, rows: int) -> tuple[Path, Path]:
    """The catalog (built once) with a sha256 per row, and a thumbnail folder holding the
    newest 200 rows' thumbnails (cached: made before, as the gallery does as rows land)."""
    catalog = work / "catalog.sqlite"
    if not catalog.exists():
        print(f"built {rows} rows in {build_catalog(catalog, rows, RowMaker()):.0f} s")
        db = sqlite3.connect(catalog)
        with db:
            db.execute("UPDATE media SET sha256 = printf('%064x', id)")
        db.close()
    thumbs = work / "thumbnails"
    if not thumbs.exists():
        make_png(work / "typical.png", 1)
        with (work / "typical.png").open("rb") as source:
            data = render(source, 512)
        db = sqlite3.connect(catalog)
        newest = db.execute("SELECT sha256 FROM media ORDER BY mtime DESC, id DESC LIMIT 200")
        for (sha,) in newest:
            (thumbs / sha[:2]).mkdir(parents=True, exist_ok=True)
            (thumbs / sha[:2] / f"{sha}.webp").write_bytes(data)
        db.close()
        with Image.open(io.BytesIO(data)) as image:
            print(f"thumbnails: {len(data) // 1024} KiB WebP {image.size[0]}x{image.size[1]}")
    return catalog, thumbs


def start(work: Path, catalog: Path, thumbs: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = work / "gallery.yaml"
    config.write_text(
        f"media_root: {work}/media\nstate_dir: {work}/state\nmetrics: {{listen: null}}\n"
        f"control: {{socket: {work}/control.sock}}\n"
        f"ingest:\n  - {{name: catalog, type: catalog, path: {catalog}}}\n"
        f"gallery: {{listen: 127.0.0.1:{port}, thumbnails: {thumbs}}}\n"
    )
    (work / "media").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [str(BIN / "forge-sync-gallery"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("forge-sync-gallery did not listen")


def visit(browser: Browser, url: str) -> dict[str, Any]:
    browser.driver.get(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found: dict[str, Any] = browser.driver.execute_script(TIMING, SHOWN)
        if found["ready"]:
            found["page"] = found["seen"]  # an upper bound: polled every 20 ms
            return found
        time.sleep(0.02)
    raise SystemExit("the page did not finish loading in 60 s")


def show(label: str, runs: list[dict[str, Any]]) -> None:
    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    last = runs[-1]
    print(
        f"{label:5} page {median('page'):6.0f} ms (worst {max(r['page'] for r in runs):.0f}):"
        f" HTML server {median('server'):.0f}, HTML done {median('html'):.0f},"
        f" load event {median('load'):.0f}, next page's JSON asked {median('nextAsked'):.0f}"
        f" and done {median('nextPage'):.0f},"
        f" last thumbnail {median('lastThumb'):.0f}; {last['images']} images,"
        f" {last['cached']} of {last['thumbs']} thumbnails from the browser cache;"
        f" {len(runs)} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=350_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    as_installed()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gallery-page-"))
    work.mkdir(parents=True, exist_ok=True)
    catalog, thumbs = prepare(work, args.rows)
    print(f"{args.rows} rows; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cold: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    ready: list[float] = []
    for _ in range(max(1, args.runs // 2)):
        subprocess.run(["sync"], check=False)
        process, port = start(work, catalog, thumbs)
        began = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/facets", timeout=600):
            ready.append(time.perf_counter() - began)  # the facets it counts as it starts
        browser = Browser(width=1400, height=2000).start()
        try:
            browser.driver.get("data:text/html,ready")  # the renderer started before timing
            url = f"http://127.0.0.1:{port}/"
            cold.append(visit(browser, url))
            warm.extend(visit(browser, url) for _ in range(args.runs))
        finally:
            browser.stop()
            process.terminate()
            process.wait(timeout=30)
    print(
        f"the gallery answered its first request (waits for the facet count) after"
        f" {statistics.median(ready):.1f} s (median of {len(ready)} starts)"
    )
    show("cold", cold)
    show("warm", warm)
    print(f"target: < 1000 ms; load average {os.getloadavg()[0]:.1f}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
