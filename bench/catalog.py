"""Catalog figures: `find` over a large catalog, and ingest of real PNGs through the sink.

    python -m bench.catalog [--rows 100000] [--runs 20] [--files 1000] [--work DIR]

1. Builds a catalog of `--rows` synthetic but realistic rows (prompts drawn from a
   vocabulary with a few very common tags, 40 models, 0-3 of 300 LoRAs a row, A1111 and
   ComfyUI seeds — a tenth above 2^63 —, 20 containers, mtimes over 90 days, 1-3 KB of
   metadata_json a row) with the sink's own INSERT and schema (triggers, full-text and LoRA
   tables, indexes), then times each kind of `find` through `CatalogSink.find` on its
   read-only connection: median and max of `--runs` runs (the first run included).
2. Writes `--files` typical PNGs (832x1216, ~1.3 MB of image data in 64 KiB IDAT chunks,
   the text chunks of the real A1111 and ComfyUI fixtures) and delivers one `file_synced`
   each to a fresh catalog sink, as the daemon does: files/s, and the part of it spent
   reading metadata.
Targets (issue 19): every query under 50 ms at 100,000 rows; ingest at least 500 PNGs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import struct
import tempfile
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from forge_syncd.catalog.dialect import SQLITE, Dialect
from forge_syncd.catalog.query import CatalogQuery
from forge_syncd.events.metadata import read_generation_info
from forge_syncd.events.sinks.catalog import INSERT, CatalogSink
from forge_syncd.library.sqlitetx import transaction

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real-media"
SHARED_FIXTURES = Path("/work/shared/fixtures/real-media")
NOW = datetime.now(UTC)
COMMON_TAGS = ["masterpiece", "best quality", "highly detailed", "8k", "photorealistic"]
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, cropped"
MODEL_STEMS = [
    "sd_xl_base_1.0",
    "juggernautXL_v9Rdphoto2Lightning",
    "realisticVisionV60B1_v51VAE",
    "ponyDiffusionV6XL_v6StartWithThisOne",
    "dreamshaper_8",
    "epicrealism_naturalSinRC1VAE",
    "v1-5-pruned-emaonly",
    "flux1-dev-fp8",
    "animagineXLV31_v31",
    "deliberate_v3",
]
SAMPLERS = ["Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "euler", "dpmpp_2m", "uni_pc"]


def vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    """Made-up but word-like prompt words (2-4 syllables), the same for a given seed."""
    syllables = ["ka", "lo", "mi", "ren", "sa", "tor", "vel", "zu", "an", "ei", "ol", "qui"]
    words = {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size * 2)}
    return sorted(words)[:size]


class RowMaker:
    """Synthetic catalog rows, deterministic for a seed."""

    def __init__(self, seed: int = 19) -> None:
        self.rng = random.Random(seed)
        self.words = vocabulary(self.rng)
        self.models = [
            f"{stem}{suffix}.safetensors"
            for stem in MODEL_STEMS
            for suffix in ("", "_fp16", "-inpainting", "_v2")
        ]
        self.loras = [f"{w}_{v}" for w in self.words[:150] for v in ("v1", "xl")]
        self.containers = [f"box-{i:02d}" for i in range(20)]
        self.seeds: list[int] = []  # the first few of each kind, for the seed searches

    def prompt(self) -> str:
        rng = self.rng
        # Zipf-like: a few words are everywhere, most are rare.
        words = [self.words[min(int(rng.paretovariate(0.9)) - 1, len(self.words) - 1)]]
        words += rng.choices(self.words, k=rng.randint(12, 40))
        words.append(f"ref{rng.randrange(50_000)}")  # a rare word: in ~2 rows of 100,000
        tags = [t for t in COMMON_TAGS if rng.random() < 0.5]
        return ", ".join(tags + words)

    def row(self, index: int, dialect: Dialect = SQLITE) -> tuple[Any, ...]:
        rng = self.rng
        comfy = rng.random() < 0.4
        container = rng.choice(self.containers)
        path = f"{'ComfyUI' if comfy else 'txt2img-images'}/{index:07d}.png"
        mtime = NOW - timedelta(seconds=rng.uniform(0, 90 * 86400))
        seed = rng.randrange(2**64) if comfy and rng.random() < 0.25 else rng.randrange(2**32)
        if len(self.seeds) < 100:
            self.seeds.append(seed)
        loras = [
            {"name": rng.choice(self.loras), "weight": round(rng.uniform(0.3, 1.2), 2)}
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3)))
        ]
        prompt = self.prompt()
        info = SimpleNamespace(
            generator="comfyui" if comfy else "a1111",
            prompt=prompt,
            negative_prompt=NEGATIVE,
            seed=seed,
            steps=rng.choice((20, 25, 30)),
            sampler=rng.choice(SAMPLERS),
            cfg_scale=rng.choice((5.0, 6.5, 7.0)),
            model=rng.choice(self.models),
            width=832,
            height=1216,
            metadata_json=prompt + "\n" + json.dumps({"extra": "x" * rng.randint(800, 2500)}),
            metadata_error=None,
            loras=loras or None,
            vae=None,
            scheduler="karras",
            denoise=1.0,
            samplers=[{"seed": seed, "steps": 20}] if comfy else None,
            duration_s=None,
            frame_rate=None,
        )
        local = f"/srv/forge-media/{container}/{path}"
        stamp = mtime.isoformat(timespec="microseconds").replace("+00:00", "Z")
        values = dialect.metadata_values(info)
        return (container, path, local, 1_500_000, stamp, None, None, *values)


def build_catalog(path: Path, rows: int, maker: RowMaker) -> float:
    """Fill a new catalog with `rows` rows through the sink's INSERT; return seconds."""
    sink = CatalogSink("catalog", {"path": path})
    started = time.perf_counter()
    try:
        for first in range(0, rows, 5000):
            batch = [maker.row(i) for i in range(first, min(rows, first + 5000))]
            with transaction(sink.db):
                sink.db.executemany(INSERT, batch)
    finally:
        sink.close()
    return time.perf_counter() - started


def queries(maker: RowMaker) -> list[tuple[str, CatalogQuery]]:
    """The searches timed: each kind of filter, common and rare values, and combinations."""
    common, rare = maker.words[0], "ref4242"
    return [
        ("newest 50, no filter", CatalogQuery()),
        ("prompt: common tag", CatalogQuery(prompt="masterpiece")),
        ("prompt: two common words", CatalogQuery(prompt=f"best quality {common}")),
        ("prompt: rare word", CatalogQuery(prompt=rare)),
        ("prompt: no match", CatalogQuery(prompt="zzzunknownword")),
        ("prompt: hostile text", CatalogQuery(prompt='NEAR( "* -x OR prompt:y')),
        ("model: substring (1/10)", CatalogQuery(model="JUGGERNAUT")),
        ("model: substring (most)", CatalogQuery(model="safetensors")),
        ("seed: exact", CatalogQuery(seed=min(s for s in maker.seeds if s < 2**32))),
        ("seed: exact > 2^63", CatalogQuery(seed=max(maker.seeds))),
        ("seed: none has it", CatalogQuery(seed=2**64 - 5)),
        ("lora: substring", CatalogQuery(lora=maker.loras[7][:6])),
        ("container", CatalogQuery(container="box-07")),
        ("container + since 7d", CatalogQuery(container="box-07", since_s=7 * 86400)),
        ("since 1h", CatalogQuery(since_s=3600)),
        (
            "combined: prompt+model+since",
            CatalogQuery(prompt="masterpiece", model="xl", since_s=30 * 86400),
        ),
        (
            "combined: rare prompt+lora",
            CatalogQuery(prompt=rare, lora=maker.loras[3][:4]),
        ),
        ("limit 1000: prompt common", CatalogQuery(prompt="masterpiece", limit=1000)),
    ]


def time_queries(path: Path, maker: RowMaker, runs: int) -> list[tuple[str, int, float, float]]:
    """Return (label, rows found, median ms, max ms) for each query."""
    sink = CatalogSink("catalog", {"path": path})
    results = []
    try:
        for label, query in queries(maker):
            durations, found = [], 0
            for _ in range(runs):
                started = time.perf_counter()
                found = len(sink.find(query))
                durations.append((time.perf_counter() - started) * 1000)
            results.append((label, found, statistics.median(durations), max(durations)))
    finally:
        sink.close()
    return results


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def text_chunks(png: bytes) -> list[bytes]:
    """Return the text chunks (whole, with length and CRC) of a PNG."""
    found, offset = [], 8
    while offset + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            found.append(png[offset : offset + 12 + length])
        offset += 12 + length
    return found


def typical_png(template: Path, rng: random.Random, width: int = 832, height: int = 1216) -> bytes:
    """A PNG as Forge or ComfyUI write it: IHDR, the template's text chunks, then about
    1.3 MB of compressed pixels in 64 KiB IDAT chunks (PIL's block size), IEND."""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    row = width * 3
    noise = rng.randbytes(row * 8)
    raw = b"".join(b"\0" + noise[(y % 8) * row : (y % 8 + 1) * row] for y in range(height))
    pixels = zlib.compress(raw, 1)
    pixels += rng.randbytes(max(0, 1_300_000 - len(pixels)))  # as much data as a photo has
    idat = b"".join(chunk(b"IDAT", pixels[i : i + 65536]) for i in range(0, len(pixels), 65536))
    texts = b"".join(text_chunks(template.read_bytes()))
    return b"\x89PNG\r\n\x1a\n" + header + texts + idat + chunk(b"IEND", b"")


def write_pngs(folder: Path, count: int) -> list[Path]:
    """Write `count` typical PNGs (copies of one per template) to `folder`."""
    source = SHARED_FIXTURES if SHARED_FIXTURES.is_dir() else FIXTURES
    templates = sorted(p for p in source.glob("*.png") if text_chunks(p.read_bytes()))
    rng = random.Random(5)
    blobs = [typical_png(t, rng) for t in templates]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.png"
        path.write_bytes(blobs[i % len(blobs)])
        paths.append(path)
    return paths


def time_ingest(work: Path, paths: list[Path]) -> tuple[float, float, int]:
    """Deliver one file_synced per file to a fresh catalog; return (files/s, metadata-only
    files/s, rows with a prompt)."""
    started = time.perf_counter()
    for path in paths:
        read_generation_info(os.fsencode(path))
    metadata_rate = len(paths) / (time.perf_counter() - started)
    sink = CatalogSink("catalog", {"path": work / "ingest.sqlite"})
    try:
        started = time.perf_counter()
        for path in paths:
            sink.deliver(
                {
                    "type": "file_synced",
                    "container": "comfy-1",
                    "path": path.name,
                    "local_path": str(path),
                    "size": path.stat().st_size,
                    "mtime": "2026-12-01T00:00:00.000000Z",
                    "sha256": None,
                }
            )
        rate = len(paths) / (time.perf_counter() - started)
        with_prompt = sink.db.execute("SELECT count(*) FROM media WHERE prompt IS NOT NULL")
        return rate, metadata_rate, int(with_prompt.fetchone()[0])
    finally:
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--work", type=Path, help="keep the catalogs here (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        maker = RowMaker()
        catalog = work / "catalog.sqlite"
        catalog.unlink(missing_ok=True)
        seconds = build_catalog(catalog, args.rows, maker)
        size_mb = catalog.stat().st_size / 1e6
        print(f"catalog: {args.rows} rows in {seconds:.1f} s ({size_mb:.0f} MB)")
        print(f"{'query':<32} {'found':>6} {'median ms':>10} {'max ms':>8}")
        for label, found, median, worst in time_queries(catalog, maker, args.runs):
            print(f"{label:<32} {found:>6} {median:>10.2f} {worst:>8.2f}")
        paths = write_pngs(work / "pngs", args.files)
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        rate, metadata_rate, with_prompt = time_ingest(work, paths)
        print(
            f"ingest: {len(paths)} PNGs (mean {mean_kb:.0f} KiB, {with_prompt} with a prompt):"
            f" {rate:.0f} files/s through the sink; metadata reading alone {metadata_rate:.0f}"
            " files/s"
        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
