"""The gallery's queries over a large catalog, SQLite and PostgreSQL side by side (issue 28:
search and facet queries p95 < 100 ms server side at 350,000 rows; gallery RSS < 200 MB).

    python -m bench.gallery_catalog [--rows 350000] [--rounds 3] [--runs 10] [--work DIR]

Builds the same rows (bench/catalog.py's RowMaker: prompts, models, LoRAs, samplers and
seeds drawn like the real fixtures' metadata, 1-3 KB of metadata_json a row, a sha256 each)
into a SQLite catalog (the sink's INSERT and migrations) and a PostgreSQL one (a scratch
server from tests/support/postgres.py, the sink's migrations, COPY, then VACUUM ANALYZE as
autovacuum would), kept in `--work` for the next run. Then:

1. In the process, through each reader (`SqliteCatalog`, `PostgresCatalog`): the facet
   counts uncached, and the thumbnail lookup by sha256.
2. Over HTTP, one real `forge-sync-gallery` process per backend, both running: every query
   kind, the backends alternating, `--rounds` rounds of `--runs` requests each; the
   server-side time (the `Server-Timing` header: the app's time to the response's start)
   and the client's. Prints p50/p95 per query kind and backend, the load average before
   and after, and each gallery's resident memory at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import as_installed
from bench.catalog import RowMaker
from forge_syncd.catalog.dialect import POSTGRES
from forge_syncd.catalog.postgres_migrations import migrate
from forge_syncd.events.sinks.catalog import INSERT, CatalogSink
from forge_syncd.gallery.source import CatalogReader
from forge_syncd.library.sqlitetx import transaction
from tests.support.postgres import PostgresServer, find_bindir
from tests.support.sshd import free_port

BIN = Path(sys.executable).parent
COLUMNS = INSERT[INSERT.index("(") + 1 : INSERT.index(")")]
BATCH = 5000


def with_sha(row: tuple[Any, ...], index: int) -> tuple[Any, ...]:
    """The row with a sha256 (column 6: after container, path, local_path, size, mtime)."""
    return (*row[:5], hashlib.sha256(b"%d" % index).hexdigest(), *row[6:])


def build_sqlite(path: Path, rows: int) -> float:
    maker = RowMaker()
    sink = CatalogSink("catalog", {"path": path})
    started = time.perf_counter()
    try:
        for first in range(0, rows, BATCH):
            batch = [with_sha(maker.row(i), i) for i in range(first, min(rows, first + BATCH))]
            with transaction(sink.db):
                sink.db.executemany(INSERT, batch)
        sink.db.execute("ANALYZE")
    finally:
        sink.close()
    return time.perf_counter() - started


def postgres_server(work: Path) -> PostgresServer:
    """The bench's PostgreSQL, its data kept in `work/pg` between runs."""
    folder = work / "pg"
    if folder.exists():
        server = PostgresServer(workdir=folder, bindir=find_bindir())
        return server.start()
    server = PostgresServer().start()
    assert server.workdir is not None
    server.stop()
    server.workdir.rename(folder)
    server.workdir = folder
    with open(server.data / "postgresql.auto.conf", "a") as conf:  # a little more than tests
        conf.write("shared_buffers = '128MB'\nwork_mem = '16MB'\n")
    return server.start()


def build_postgres(server: PostgresServer, rows: int) -> tuple[str, float]:
    dsn = server.dsn("gallery")
    started = time.perf_counter()
    exists = False
    with server.superuser() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'gallery'").fetchone()
    if exists:
        return dsn, 0.0
    server.create_database("gallery")
    import psycopg

    maker = RowMaker()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        with conn.cursor() as cursor, cursor.copy(f"COPY media ({COLUMNS}) FROM STDIN") as copy:
            for index in range(rows):
                copy.write_row(with_sha(maker.row(index, POSTGRES), index))
        conn.execute("VACUUM ANALYZE media")
    return dsn, time.perf_counter() - started


def gallery_process(work: Path, name: str, sink_yaml: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    config = work / f"{name}.yaml"
    config.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state-{name}
metrics: {{listen: null}}
control: {{socket: {work}/run-{name}/control.sock}}
ingest:
  - {sink_yaml}
gallery: {{listen: 127.0.0.1:{port}, thumbnails: {work}/thumbs-{name}, catalog: cat}}
"""
    )
    process = subprocess.Popen(
        [str(BIN / "forge-sync-gallery"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            get(port, "/api/search?limit=1")
            return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{name} gallery exited: {process.stderr}") from None
            time.sleep(0.2)
    raise RuntimeError(f"{name} gallery did not answer")


def get(port: int, path: str) -> tuple[float, float, bytes]:
    """GET `path`; return (server ms from Server-Timing, client ms, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        took = (time.perf_counter() - started) * 1000
        timing = response.getheader("server-timing", "app;dur=nan")
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return float(timing.split("dur=")[1]), took, body


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cases(port: int, maker: RowMaker) -> list[tuple[str, str]]:
    """(label, path) of each query kind; the cursor and item are this backend's own."""
    page = json.loads(get(port, "/api/search?limit=60")[2])
    first = page["items"]
    cursor = page["next"]
    for _ in range(20):  # 20 pages in
        cursor = json.loads(get(port, f"/api/search?limit=60&cursor={quote(cursor)}")[2])["next"]
    sha = hashlib.sha256(b"%d" % 42).hexdigest()
    return [
        ("grid page (HTML, 60)", "/"),
        ("search: newest 60", "/api/search?limit=60"),
        ("search: page 21 by cursor", f"/api/search?limit=60&cursor={quote(cursor)}"),
        ("q: common tag, 100", "/api/search?q=masterpiece&limit=100"),
        ("q: two words", "/api/search?q=best+quality"),
        ("q: rare word", "/api/search?q=ref4242"),
        ("generator=comfyui", "/api/search?generator=comfyui"),
        ("sampler=euler", "/api/search?sampler=euler"),
        ("container + since 7d", "/api/search?container=box-07&since=7d"),
        ("until 60 days ago", f"/api/search?until={first[-1]['mtime'][:10]}&since=90d"),
        ("model: substring", "/api/search?model=juggernaut"),
        ("lora: substring", f"/api/search?lora={quote(maker.loras[7][:6])}"),
        ("metadata=no (none)", "/api/search?metadata=no"),
        ("facets (served)", "/api/facets"),
        ("item with versions", f"/api/item/{first[0]['id']}"),
        ("thumb by sha256", f"/thumb/{sha}.webp"),
    ]


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def in_process(readers: dict[str, CatalogReader], runs: int) -> None:
    print("\nin the process (the reader alone), ms:")
    print(f"{'':28} " + " ".join(f"{name + ' p50':>13} {name + ' p95':>13}" for name in readers))
    work: list[tuple[str, Callable[[CatalogReader], Any]]] = [
        ("facets, uncached", lambda r: r.facet_cache.count()),  # type: ignore[attr-defined]
        ("thumb lookup by sha256", lambda r: r.source_of(hashlib.sha256(b"77").hexdigest())),
    ]
    for label, run in work:
        cells = []
        for reader in readers.values():
            took = []
            for _ in range(runs):
                started = time.perf_counter()
                run(reader)
                took.append((time.perf_counter() - started) * 1000)
            cells.append(f"{p(took, 0.5):13.1f} {p(took, 0.95):13.1f}")
        print(f"{label:28} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=350_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    as_installed()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gallery-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "media").mkdir(exist_ok=True)
    path = work / "catalog.sqlite"
    if not path.exists():
        took = build_sqlite(path, args.rows)
        print(f"SQLite: built {args.rows} rows in {took:.0f} s", flush=True)
    server = postgres_server(work)
    processes: list[subprocess.Popen[str]] = []
    try:
        dsn, took = build_postgres(server, args.rows)
        if took:
            print(f"PostgreSQL: built {args.rows} rows in {took:.0f} s", flush=True)
        from forge_syncd.gallery.catalog import SqliteCatalog
        from forge_syncd.gallery.pg_catalog import PostgresCatalog

        print(f"load average at start: {os.getloadavg()}")
        in_process({"sqlite": SqliteCatalog(path), "postgres": PostgresCatalog(dsn)}, args.runs)
        ports = {}
        for name, sink in (
            ("sqlite", f"{{name: cat, type: catalog, path: {path}}}"),
            ("postgres", f"{{name: cat, type: postgres, dsn: '{dsn}'}}"),
        ):
            process, ports[name] = gallery_process(work, name, sink)
            processes.append(process)
        maker = RowMaker()
        kinds = {name: cases(port, maker) for name, port in ports.items()}
        timings: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for index in range(len(kinds["sqlite"])):
                for name, port in ports.items():  # the backends alternate
                    label, url = kinds[name][index]
                    for _ in range(args.runs):
                        server_ms, client_ms, _ = get(port, url)
                        timings.setdefault((label, name), []).append((server_ms, client_ms))
        print("\nover HTTP (a real forge-sync-gallery per backend), ms: server (Server-Timing)")
        print("and client (the whole request on 127.0.0.1), p50/p95")
        heads = ("sqlite server", "pg server", "sqlite http", "pg http")
        print(f"{'query':28} " + " ".join(f"{head:>15}" for head in heads))
        for label, _ in kinds["sqlite"]:
            cells = []
            for column in (0, 1):
                for name in ports:
                    values = [t[column] for t in timings[(label, name)]]
                    cells.append(f"{p(values, 0.5):7.1f}/{p(values, 0.95):7.1f}")
            print(f"{label:28} " + " ".join(cells))
        print(f"\nload average at end: {os.getloadavg()}")
        for name, process in zip(ports, processes, strict=True):
            print(f"{name} gallery resident memory: {rss_mb(process.pid):.0f} MB")
        every = [t[0] for v in timings.values() for t in v]
        print(f"median of every server time: {statistics.median(every):.1f} ms")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        server.stop()


if __name__ == "__main__":
    main()
