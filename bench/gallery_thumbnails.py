"""Thumbnail throughput: the gallery's Pillow path (draft + reduce, WebP) against pyvips.

    python -m bench.gallery_thumbnails [--files 40] [--size 512] [--work DIR]

Writes `--files` typical SD PNGs (1024x1024 RGB, smooth gradients with fine noise: 1-2 MB
each) and a copy of each as JPEG, then makes a WebP thumbnail of each, one thread, with
`forge_syncd.gallery.thumbs.render` (Pillow) and, when pyvips and libvips are installed,
`pyvips.Image.thumbnail` + `webpsave_buffer` at the same quality. Prints thumbnails/s and
the mean source size. Target (issue 28): >= 50 typical PNGs per second per core.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from PIL import Image

from forge_syncd.gallery.thumbs import METHOD, QUALITY, render


def make_png(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    small = Image.new("RGB", (64, 64))
    small.putdata(
        [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(4096)]
    )
    image = small.resize((1024, 1024), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((1024, 1024), 24).convert("RGB")
    Image.blend(image, noise, 0.12).save(path, compress_level=6)


def rate(paths: list[Path], make: object) -> float:
    assert callable(make)
    started = time.perf_counter()
    for path in paths:
        make(path)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-thumbs-"))
    pngs = [work / f"{i}.png" for i in range(args.files)]
    for index, path in enumerate(pngs):
        make_png(path, index)
        Image.open(path).save(path.with_suffix(".jpg"), quality=92)
    jpgs = [path.with_suffix(".jpg") for path in pngs]
    mean = sum(p.stat().st_size for p in pngs) / len(pngs) / 1e6
    print(
        f"{args.files} PNGs 1024x1024, mean {mean:.2f} MB; thumbnails {args.size}px WebP q{QUALITY}"
    )

    def pillow(path: Path) -> bytes:
        with path.open("rb") as source:
            return render(source, args.size)

    print(f"pillow  png: {rate(pngs, pillow):6.1f}/s  jpg: {rate(jpgs, pillow):6.1f}/s")
    try:
        import pyvips
    except (ImportError, OSError) as exc:
        print(f"pyvips: not measured ({exc})")
        return

    def vips(path: Path) -> bytes:
        thumb = pyvips.Image.thumbnail(str(path), args.size)
        return bytes(thumb.webpsave_buffer(Q=QUALITY, effort=METHOD))

    print(f"pyvips  png: {rate(pngs, vips):6.1f}/s  jpg: {rate(jpgs, vips):6.1f}/s")


if __name__ == "__main__":
    main()
