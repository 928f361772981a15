"""The gallery's queries over a large SQLite catalog (issue 28: p95 < 100 ms at 350,000 rows).

    python -m bench.gallery_catalog [--rows 350000] [--runs 20] [--work DIR]

Builds the catalog with bench/catalog.py's rows (the sink's own INSERT and schema), then
times through `GalleryCatalog` (its read-only connection, as the server runs them): the
first grid page, a page deep in the cursor walk, each filter, facets (uncached). Prints
rows found, median and p95 ms of `--runs` runs (the first included).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.catalog import RowMaker, build_catalog
from forge_syncd.gallery.api import search_query
from forge_syncd.gallery.catalog import GalleryCatalog


def timed(runs: int, work: Callable[[], Any]) -> tuple[int, float, float]:
    durations, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        durations.append((time.perf_counter() - started) * 1000)
        found = len(result)
    durations.sort()
    return found, statistics.median(durations), durations[max(0, int(len(durations) * 0.95) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=350_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    path = work / "catalog.sqlite"
    maker = RowMaker()
    if not path.exists():
        print(f"built {args.rows} rows in {build_catalog(path, args.rows, maker):.0f} s")
    catalog = GalleryCatalog(path)
    first = catalog.search(search_query({}))
    deep = search_query({})
    for _ in range(20):  # 20 pages in
        page = catalog.search(deep)
        deep = dataclasses.replace(deep, cursor=(page[-1]["mtime"], page[-1]["id"]))
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("grid: first page (60)", lambda: catalog.search(search_query({}))),
        ("grid: page 21 by cursor", lambda: catalog.search(deep)),
        ("q: common tag", lambda: catalog.search(search_query({"q": "masterpiece"}))),
        ("generator=comfyui", lambda: catalog.search(search_query({"generator": "comfyui"}))),
        (
            "sampler (1 of many)",
            lambda: catalog.search(search_query({"sampler": first[0]["sampler"]})),
        ),
        (
            "container + since 7d",
            lambda: catalog.search(search_query({"container": "box-07", "since": "7d"})),
        ),
        (
            "until a date 60 days ago",
            lambda: catalog.search(search_query({"until": first[-1]["mtime"][:10]})),
        ),
        ("item", lambda: [catalog.item(first[0]["id"])]),
    ]
    print(f"{'query':32} {'rows':>5} {'median ms':>10} {'p95 ms':>8}")
    for label, run in cases:
        found, median, p95 = timed(args.runs, run)
        print(f"{label:32} {found:5} {median:10.1f} {p95:8.1f}")

    def facets() -> Any:
        catalog._facets = None
        return catalog.facets()

    found, median, p95 = timed(max(3, args.runs // 4), facets)
    print(f"{'facets (uncached)':32} {found:5} {median:10.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
