"""Generation metadata from the real A1111/ComfyUI files, and hostile files handled."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from forge_syncd.events.metadata import read_generation_info
from tests.support.trees import REAL_MEDIA

# The values below were read off the files' own chunks (see tests/fixtures/real-media/README).
A1111 = {
    "generator": "a1111",
    "prompt": "photo of a duck",
    "negative_prompt": "monochrome",
    "seed": 235284042,
    "steps": 15,
    "sampler": "UniPC",
    "cfg_scale": 5.0,
    "model": "realistic_realisticVisionV20_v20",
    "width": 1,
    "height": 1,
}
EXPECTED = {
    "automatic1111_cropped.png": A1111,
    "automatic1111_cropped.jpg": A1111,
    "img2img_cropped.png": {
        "generator": "comfyui",
        "prompt": "photograph of victorian woman with wings, sky clouds, meadow grass",
        "negative_prompt": "watermark, text",
        "seed": 280823642470253,
        "steps": 20,
        "sampler": "sample_dpmpp_2m",
        "cfg_scale": 8.0,
        "model": "v1-5-pruned-emaonly.ckpt",
        "width": 1,
        "height": 1,
    },
    "unclip_2pass_cropped.png": {
        "generator": "comfyui",
        "seed": 1106257833005336,
        "steps": 26,
        "sampler": "uni_pc_bh2",
        "cfg_scale": 8.0,
        "model": "wd-1-5-beta2-aesthetic-unclip-h-fp32.safetensors",
    },
    "night_evening_day_morning_cropped.png": {
        "generator": "comfyui",
        "seed": 335608130539327,
        "steps": 13,
        "sampler": "dpmpp_sde",
        "cfg_scale": 8.5,
        "model": "Anything-V3.0.ckpt",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_metadata(name: str) -> None:
    """Every field the catalog extracts equals the value embedded in the real file."""
    info = read_generation_info(bytes(REAL_MEDIA / name)).as_dict()
    for key, value in EXPECTED[name].items():
        assert info[key] == value, key
    assert json.loads(info["metadata_json"])
    assert info["metadata_error"] is None


def test_comfy_texts_follow_links_through_conditioning_nodes() -> None:
    """unCLIP and area-composition graphs: the prompt text is found through the nodes between
    the sampler's positive input and the CLIP text nodes (the first pass's sampler)."""
    unclip = read_generation_info(bytes(REAL_MEDIA / "unclip_2pass_cropped.png"))
    assert unclip.prompt is not None and unclip.prompt.startswith("(waifu, anime")
    assert unclip.negative_prompt is not None and unclip.negative_prompt.startswith("lowres")
    areas = read_generation_info(bytes(REAL_MEDIA / "night_evening_day_morning_cropped.png"))
    assert areas.prompt is not None
    assert "(best quality) (daytime:1.2) sky (blue)" in areas.prompt.split("\n")
    assert "(masterpiece) (best quality) morning sky" in areas.prompt.split("\n")


def png(*chunks: tuple[bytes, bytes]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body
        out += struct.pack(">I", zlib.crc32(kind + body))
    return out


IHDR = (b"IHDR", struct.pack(">IIBBBBB", 64, 32, 8, 2, 0, 0, 0))


@pytest.mark.parametrize(
    "data",
    [
        png(IHDR, (b"tEXt", b"parameters\0photo\nSteps: 2"))[:-10],  # truncated chunk
        png(IHDR)[:20],  # truncated IHDR
        png(IHDR, (b"tEXt", b"prompt\0[1, 2, 3]")),  # JSON, not a graph
        png(
            IHDR,
            (
                b"tEXt",
                b'prompt\0{"3": {"class_type": "KSampler", "inputs": '
                b'{"positive": ["3", 0], "seed": "x"}}}',
            ),
        ),  # a cycle
        png(IHDR, (b"iTXt", b"parameters\0\0\0\0\0\xff\xfe bad utf-8")),
        png(IHDR, (b"zTXt", b"parameters\0\0" + b"not zlib")),
        png(IHDR, (b"zTXt", b"parameters\0\0" + zlib.compress(b"x" * (8 * 1024 * 1024)))),
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 100,
        b"not a png at all",
    ],
)
def test_malformed_files_give_no_metadata_and_no_error(tmp_path: Path, data: bytes) -> None:
    """Truncated chunks, invalid UTF-8, bad zlib, bombs, cycles and JSON that is not a graph
    give a result without (wrong) metadata instead of an exception."""
    path = tmp_path / "x.png"
    path.write_bytes(data)
    info = read_generation_info(bytes(path))
    assert info.seed is None and info.steps is None


def test_huge_text_chunk_is_skipped_without_reading_it(tmp_path: Path) -> None:
    """A 50 MB text chunk is skipped (seeked over) and said to be, the image size still read."""
    path = tmp_path / "big.png"
    with open(path, "wb") as handle:
        handle.write(png(IHDR))
        handle.write(struct.pack(">I", 50 * 1024 * 1024) + b"tEXt" + b"parameters\0")
        handle.seek(50 * 1024 * 1024 - 11, 1)
        handle.write(b"\0\0\0\0")
    info = read_generation_info(bytes(path))
    assert (info.width, info.height) == (64, 32)
    assert info.prompt is None
    assert info.metadata_error == (
        "too_large: PNG tEXt chunk 'parameters' of 52428800 bytes skipped: "
        "over the 1048576 bytes allowed per chunk"
    )
