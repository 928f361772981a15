"""Thumbnail throughput, per core: the gallery's Pillow path and its variants against pyvips.

    python -m bench.gallery_thumbnails [--files 30] [--rounds 3] [--size 512] [--work DIR]

Writes `--files` typical SD PNGs (1024x1024 RGB, smooth gradients with fine noise: 1-2 MB
each) and a JPEG of each, then makes a WebP thumbnail of each (one thread; libvips held to
one thread too) with each variant, the variants alternating, `--rounds` rounds. A rate is
thumbnails per CPU second of this process (per core: the machine is shared, wall time
counts the neighbours), the median of the rounds; the wall-time rate is printed beside it.
Then the real fixtures (tests/fixtures/media, real-media: small files, several formats)
with the gallery's own path, and where the Pillow time goes on a PNG (decode, resize,
encode at each WebP `method`). Target (issue 28): >= 50 typical PNGs per second per core.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from forge_syncd.gallery.thumbs import METHOD, QUALITY, render

os.environ.setdefault("VIPS_CONCURRENCY", "1")
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
Variant = Callable[[Path], bytes]


def make_png(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    small = Image.new("RGB", (64, 64))
    small.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(4096)]
    )
    image = small.resize((1024, 1024), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((1024, 1024), 24).convert("RGB")
    Image.blend(image, noise, 0.12).save(path, compress_level=6)


def measure(paths: list[Path], make: Variant) -> tuple[float, float]:
    """(thumbnails per CPU second, thumbnails per wall second) over `paths`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for path in paths:
        make(path)
    return len(paths) / (time.process_time() - cpu), len(paths) / (time.perf_counter() - wall)


def pillow_variants(size: int) -> dict[str, Variant]:
    def gallery(path: Path) -> bytes:
        with path.open("rb") as source:
            return render(source, size)

    def before(path: Path) -> bytes:  # the gallery's first path: thumbnail(), method 2
        with Image.open(path) as opened:
            opened.draft("RGB", (size, size))
            opened.thumbnail((size, size), reducing_gap=2.0)
            out = io.BytesIO()
            opened.save(out, "WEBP", quality=QUALITY, method=2)
            return out.getvalue()

    def shrink(image: Image.Image, method: int) -> bytes:
        factor = max(1, max(image.size) // size)
        small = image.reduce(factor) if factor > 1 else image
        small.thumbnail((size, size), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        small.save(out, "WEBP", quality=QUALITY, method=method)
        return out.getvalue()

    def reduce_method(method: int) -> Variant:  # the gallery without pyvips
        def run(path: Path) -> bytes:
            with Image.open(path) as opened:
                opened.draft("RGB", (size, size))
                return shrink(opened, method)

        return run

    found: dict[str, Variant] = {
        f"gallery render() (pyvips PNGs, m{METHOD})": gallery,
        "pillow thumbnail() m2 (before)": before,
        "pillow reduce() m0": reduce_method(0),
        "pillow reduce() m2": reduce_method(2),
    }
    try:
        import pyspng  # libspng's PNG decoder (needs numpy)
    except ImportError:
        return found

    def spng(path: Path) -> bytes:
        if path.suffix != ".png":
            return reduce_method(0)(path)
        return shrink(Image.fromarray(pyspng.load(path.read_bytes())), 0)

    return found | {"pyspng + pillow reduce() m0": spng}


def vips_variants(size: int) -> dict[str, Variant]:
    try:
        import pyvips
    except (ImportError, OSError) as exc:
        print(f"pyvips: not measured ({exc})")
        return {}
    pyvips.cache_set_max(0)

    def effort(value: int) -> Variant:
        def run(path: Path) -> bytes:
            with path.open("rb") as handle:
                source = pyvips.Source.new_from_descriptor(handle.fileno())
                thumb = pyvips.Image.thumbnail_source(source, size)
                return bytes(thumb.webpsave_buffer(Q=QUALITY, effort=value))

        return run

    version = ".".join(str(pyvips.version(n)) for n in range(3))
    return {f"pyvips {version} thumbnail m{e}": effort(e) for e in (0, 2, 4)}


def compare(label: str, paths: list[Path], variants: dict[str, Variant], rounds: int) -> None:
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    wall: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, make in variants.items():  # alternating: the load falls on each alike
            rate, wall_rate = measure(paths, make)
            cpu[name].append(rate)
            wall[name].append(wall_rate)
    base = statistics.median(next(iter(cpu.values())))
    print(f"\n{label}: thumbnails per CPU second (one core), median of {rounds} rounds")
    for name in variants:
        median = statistics.median(cpu[name])
        print(
            f"  {name:34} {median:6.1f}/s  (x{median / base:4.2f})"
            f"  wall {statistics.median(wall[name]):6.1f}/s"
        )


def stages(paths: list[Path], size: int) -> None:
    """Where Pillow's time goes on a PNG: decode, reduce, WebP encode at each method."""
    decode, shrink = [], []
    encode: dict[int, list[float]] = {m: [] for m in range(5)}
    for path in paths:
        started = time.process_time()
        with Image.open(path) as opened:
            opened.load()
            decoded = time.process_time()
            small = opened.reduce(max(1, min(opened.size) // size))
        reduced = time.process_time()
        decode.append(decoded - started)
        shrink.append(reduced - decoded)
        for method in encode:
            begun = time.process_time()
            small.save(io.BytesIO(), "WEBP", quality=QUALITY, method=method)
            encode[method].append(time.process_time() - begun)
    ms = {name: 1000 * statistics.median(v) for name, v in (("decode", decode), ("reduce", shrink))}
    methods = "  ".join(f"m{m} {1000 * statistics.median(v):.1f}" for m, v in encode.items())
    print(
        f"\nPillow per PNG (CPU ms, median): decode {ms['decode']:.1f}, reduce {ms['reduce']:.1f},"
        f" WebP encode {methods}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-thumbs-"))
    pngs = [work / f"{i}.png" for i in range(args.files)]
    for index, path in enumerate(pngs):
        if not path.exists():
            make_png(path, index)
        if not path.with_suffix(".jpg").exists():
            Image.open(path).save(path.with_suffix(".jpg"), quality=92)
    jpgs = [path.with_suffix(".jpg") for path in pngs]
    mean = sum(p.stat().st_size for p in pngs) / len(pngs) / 1e6
    print(
        f"{args.files} PNGs 1024x1024, mean {mean:.2f} MB; thumbnails {args.size}px WebP"
        f" q{QUALITY}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    variants = pillow_variants(args.size) | vips_variants(args.size)
    compare("1024² PNG", pngs, variants, args.rounds)
    compare("1024² JPEG q92", jpgs, variants, args.rounds)
    real = [
        path
        for folder in ("media", "real-media")
        for path in sorted((FIXTURES / folder).glob("*"))
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
    ]
    compare(f"real fixtures ({len(real)} files)", real * 10, variants, args.rounds)
    stages(pngs, args.size)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
