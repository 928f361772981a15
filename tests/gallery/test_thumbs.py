"""Thumbnail rendering: PNGs through libvips (pyvips, when installed) and through Pillow (its
fallback) give the same sizes and modes; a truncated PNG is an error on both paths (the
placeholder), never half an image; JPEGs take Pillow's draft path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from forge_syncd.gallery import thumbs

SHAPES = {
    "RGB": ((1024, 1024), (512, 512), "RGB"),
    "RGBA": ((1024, 600), (512, 300), "RGBA"),
    "P": ((700, 1400), (256, 512), "RGB"),
    "I;16": ((1200, 800), (512, 341), "RGB"),
    "LA": ((300, 200), (300, 200), "RGBA"),  # never enlarged
}


def png(path: Path, mode: str, size: tuple[int, int]) -> Path:
    """A vertical gradient, black at the top, white at the bottom, in `mode`."""
    image = Image.linear_gradient("L").resize(size)
    converted = image.convert(mode)
    if mode == "I;16":
        converted = image.convert("I").point(lambda value: value * 256).convert("I;16")
    if "A" in mode:
        converted.putalpha(image)  # transparent at the top (WebP drops an opaque alpha)
    converted.save(path)
    return path


def paths() -> list[str]:
    found = ["pillow"]
    if thumbs.vips is not None:
        found.append("libvips")
    return found


@pytest.mark.parametrize("decoder", paths())
def test_png_thumbnails_keep_shape_and_mode(
    decoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each PNG mode (16-bit grey too: Pillow's reduce() does not take it) gives a WebP at
    most 512 on its longest side, in proportion, RGB or RGBA (alpha kept), its gradient
    kept (a 16-bit image is scaled to 8 bits, not clipped white), whichever decoder."""
    if decoder == "pillow":
        monkeypatch.setattr(thumbs, "vips", None)
    for mode, (size, expected, out_mode) in SHAPES.items():
        with png(tmp_path / "in.png", mode, size).open("rb") as source:
            made = thumbs.render(source, 512)
        with Image.open(io.BytesIO(made)) as thumb:
            assert (thumb.format, thumb.size, thumb.mode) == ("WEBP", expected, out_mode), mode
            column = [thumb.convert("L").getpixel((2, y)) for y in (2, thumb.size[1] - 3)]
        assert column[0] < 40 and column[1] > 200, (mode, column)  # type: ignore[operator]


@pytest.mark.parametrize("decoder", paths())
def test_a_truncated_png_is_an_error(
    decoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG cut at a third raises (OSError or ValueError: the caller serves the
    placeholder) on both paths, rather than a thumbnail half grey."""
    if decoder == "pillow":
        monkeypatch.setattr(thumbs, "vips", None)
    whole = io.BytesIO()
    Image.effect_noise((800, 800), 40).convert("RGB").save(whole, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
    with cut.open("rb") as source, pytest.raises((OSError, ValueError)):
        thumbs.render(source, 512)


def test_jpeg_takes_the_draft_path(tmp_path: Path) -> None:
    """A 2048² JPEG becomes a 512² WebP (decoded at reduced scale by Pillow)."""
    Image.new("RGB", (2048, 2048), (10, 120, 200)).save(tmp_path / "big.jpg", quality=90)
    with (tmp_path / "big.jpg").open("rb") as source:
        made = thumbs.render(source, 512)
    with Image.open(io.BytesIO(made)) as thumb:
        assert thumb.size == (512, 512)
        red, green, blue = thumb.convert("RGB").getpixel((256, 256))  # type: ignore[misc]
    assert abs(red - 10) < 12 and abs(green - 120) < 12 and abs(blue - 200) < 12
