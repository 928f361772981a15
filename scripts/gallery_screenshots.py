"""Take the README's gallery screenshots (docs/gallery-*.png) over a realistic library.

    python -m scripts.gallery_screenshots [--out docs]

Draws 48 landscapes (832x1216 and 1024x1024, sky, sun, hills, water) as PNGs carrying the
real fixtures' metadata (tests/fixtures: A1111, ComfyUI, InvokeAI, NovelAI, Fooocus text
chunks) or A1111 parameters of varied prompts, seeds and samplers, plus two short videos
made by ffmpeg (poster frames), in two containers; starts the real forge-sync-gallery and
Debian's Chromium (tests/support) and saves the grid, an item and a compare of two files
that differ in seed and sampler, at 1280x800.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from PIL.PngImagePlugin import PngInfo

from bench.catalog import text_chunks
from tests.support.browser import Browser
from tests.support.gallery import FIXTURES, Gallery, Library

PROMPTS = [
    "lighthouse on a cliff at dusk, volumetric fog, golden hour, masterpiece",
    "alpine lake at sunrise, mirror reflection, pine forest, 8k, highly detailed",
    "desert dunes under a violet sky, two moons, cinematic lighting",
    "misty valley, layered mountains, watercolor, soft pastel palette",
    "tropical lagoon at sunset, long exposure, vibrant colors",
    "northern fjord, overcast, moody, film grain, 35mm photograph",
    "lavender fields in provence, warm evening light, bokeh",
    "volcanic island at night, glowing lava, starry sky, ultra wide",
]
SAMPLERS = ["Euler a", "DPM++ 2M Karras", "DPM++ SDE Karras", "UniPC", "DDIM"]
MODELS = ["sdxl_base_1.0", "juggernautXL_v9", "dreamshaper_8", "realisticVision_v6"]


def landscape(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top = tuple(rng.randrange(20, 120) for _ in range(3))
    bottom = tuple(rng.randrange(150, 255) for _ in range(3))
    sky = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), sky)
    draw = ImageDraw.Draw(image)
    sun = (rng.randrange(width // 5, 4 * width // 5), rng.randrange(height // 6, height // 2))
    radius = rng.randrange(width // 14, width // 7)
    glow = (255, rng.randrange(170, 240), rng.randrange(80, 180))
    draw.ellipse((sun[0] - radius, sun[1] - radius, sun[0] + radius, sun[1] + radius), glow)
    horizon = int(height * rng.uniform(0.55, 0.7))
    for layer in range(4):
        base = horizon - (3 - layer) * height // 18
        shade = tuple(max(0, int(c * (0.75 - 0.17 * layer))) for c in top)
        points = [(0, height)]
        x, y = 0, base - rng.randrange(height // 10)
        while x <= width:
            points.append((x, y))
            x += width // 24
            y = min(base, max(base - height // 4, y + rng.randrange(-height // 30, height // 30)))
        points += [(width, y), (width, height)]
        draw.polygon(points, fill=shade)
    water = image.crop((0, 0, width, height - horizon)).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    water = Image.blend(water, Image.new("RGB", water.size, top), 0.45)
    image.paste(water, (0, horizon))
    return image.filter(ImageFilter.GaussianBlur(1.2))


def metadata_pngs() -> list[Path]:
    found = [*(FIXTURES / "real-media").glob("*.png"), *(FIXTURES / "media").glob("*.png")]
    return [p for p in sorted(found) if text_chunks(p.read_bytes())]


def picture(path: Path, rng: random.Random, index: int, template: Path | None) -> Path:
    size = (832, 1216) if index % 3 else (1024, 1024)
    image = landscape(rng, size)
    if template is None:
        info = PngInfo()
        info.add_text(
            "parameters",
            f"{PROMPTS[index % len(PROMPTS)]}\nNegative prompt: blurry, lowres, watermark\n"
            f"Steps: {rng.choice((20, 25, 30))}, Sampler: {rng.choice(SAMPLERS)}, CFG scale: 7,"
            f" Seed: {rng.randrange(2**32)}, Size: {size[0]}x{size[1]},"
            f" Model: {rng.choice(MODELS)}",
        )
        image.save(path, pnginfo=info, compress_level=1)
        return path
    image.save(path, compress_level=1)
    data = path.read_bytes()
    path.write_bytes(data[:33] + b"".join(text_chunks(template.read_bytes())) + data[33:])
    return path


def video(path: Path, source: str) -> Path:
    subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", source),
            *("-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)),
        ],
        check=True,
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gallery-shots-"))
    rng = random.Random(28)
    library = Library(work)
    templates = metadata_pngs()
    twins: list[int] = []
    try:
        for index in range(48):
            template = templates[index % len(templates)] if index % 4 == 0 else None
            source = picture(work / f"src{index}.png", rng, index, template)
            container = "forge-a" if index % 3 else "comfy-b"
            library.add(source, container, f"{index:05d}-{rng.randrange(10**6)}.png")
        if shutil.which("ffmpeg"):
            for name, source in (("mandel.mp4", "mandelbrot=size=768x768:rate=10"),):
                library.add(video(work / name, source), "comfy-b", name)
        for seed, sampler in ((1234, "Euler a"), (1235, "DPM++ 2M Karras")):
            info = PngInfo()
            info.add_text(
                "parameters",
                f"{PROMPTS[0]}\nNegative prompt: blurry, lowres\nSteps: 25, Sampler: {sampler},"
                f" CFG scale: 7, Seed: {seed}, Size: 832x1216, Model: juggernautXL_v9",
            )
            path = work / f"twin{seed}.png"
            landscape(random.Random(seed), (832, 1216)).save(path, pnginfo=info)
            library.add(path, "forge-a", f"twin-{seed}.png")
            twins.append(library.row_id("forge-a", f"twin-{seed}.png"))
        server = Gallery(library, work / "thumbnails").start()
        browser = Browser(width=1280, height=800).start()
        try:
            shots = [
                ("gallery-grid.png", "/"),
                ("gallery-item.png", f"/item/{twins[0]}"),
                ("gallery-compare.png", f"/compare?a={twins[0]}&b={twins[1]}"),
            ]
            for name, page in shots:
                browser.driver.get(server.url + page)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not browser.driver.execute_script(
                    "return Array.from(document.images).every(i => i.complete && i.naturalWidth)"
                ):
                    time.sleep(0.2)
                time.sleep(0.5)
                size = browser.screenshot(args.out / name)
                print(f"{args.out / name}: {size[0]}x{size[1]}")
        finally:
            browser.stop()
            server.stop()
    finally:
        library.sink.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
