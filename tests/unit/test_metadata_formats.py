"""Issue 19, formats: every front end and container the catalog reads (A1111/Forge incl.
stealth and sidecars, ComfyUI PNG/animated WebP/animated PNG/MP4/WebM/MKV, InvokeAI x3,
Fooocus, SwarmUI, NovelAI), every sampler of a ComfyUI graph with its traced prompts, and
hostile containers read within the budget without raising."""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_syncd.events.budget import MetadataBudget, MetadataProblem
from forge_syncd.events.metadata import GenerationInfo, parse_comfy_graph, read_generation_info
from tests.support.trees import REAL_MEDIA
from tests.unit.test_metadata import png

MEDIA = Path(__file__).resolve().parent.parent / "fixtures" / "media"
KINDS = tuple(f"{kind}: " for kind in MetadataProblem)


def read(path: Path, budget: MetadataBudget | None = None) -> GenerationInfo:
    """Read a file's metadata (with the default budget unless one is given)."""
    if budget is None:
        return read_generation_info(bytes(path))
    return read_generation_info(bytes(path), budget)


def check(info: GenerationInfo, expected: dict[str, Any]) -> None:
    """Every expected column equals the value read; the file was read without a problem."""
    found = info.as_dict()
    for key, value in expected.items():
        assert found[key] == value, key
    assert info.metadata_error is None


# -- real files ---------------------------------------------------------------------------------
# Values read off each file's own chunks (and equal to sd-parsers' expectations for them).
INVOKE_DREAM_PROMPT = (
    "professional full body photo of young woman, hyper long brunette hair, elegant hair, "
    "wearing a bikini top and asymmetric short skirt, curvy body, long legs, (imperfect skin), "
    "detailed skin, intense freckles, super long eye lashes, at night, outside, city "
    "background, 8k ultra detailed, realistic, high quality, film grain, low contrast"
)
REAL = {
    "automatic1111_stealth.png": {
        "generator": "a1111",
        "prompt": "a circle",
        "negative_prompt": "a square",
        "seed": 2015833630,
        "steps": 20,
        "sampler": "Euler",
        "scheduler": "Automatic",
        "cfg_scale": 7.0,
        "model": "realisticVisionV51_v51VAE",
        "width": 64,
        "height": 64,
    },
    "fooocus1_cropped.png": {
        "generator": "fooocus",
        "prompt": "a smiling goldfish",
        "negative_prompt": None,
        "seed": 6952411511246973023,
        "steps": 30,
        "sampler": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "cfg_scale": 4.0,
        "model": "juggernautXL_v8Rundiffusion",
        "vae": None,  # "Default (model)": the checkpoint's own
        "loras": None,
    },
    "invokeai_imeta1.png": {
        "generator": "invokeai",
        "prompt": "digital artwork, oil painting. painterly brushstrokes, holidays,",
        "negative_prompt": "grainy+, photo, oversaturated, overexposed, blurry, compressed "
        "jpg+, noisy++, unfocused , black and white",
        "seed": 3293022630,
        "steps": 35,
        "sampler": "euler",
        "cfg_scale": 8.0,
        "model": "juggernautXL",
        "vae": "VAEFix",
    },
    "invokeai_sdmeta1.png": {
        "generator": "invokeai",
        "prompt": INVOKE_DREAM_PROMPT,
        "negative_prompt": "rendering, glowing eyes, skinny",
        "seed": 2980747362,
        "steps": 50,
        "sampler": "k_lms",
        "cfg_scale": 5.0,
        "model": "deliberateForInvoke_v08",
    },
    "invokeai_dream1.png": {
        "generator": "invokeai",
        "prompt": INVOKE_DREAM_PROMPT,
        "negative_prompt": "rendering, glowing eyes, skinny",
        "seed": 2980747362,
        "steps": 50,
        "sampler": "k_lms",
        "cfg_scale": 5.0,
        "model": None,
    },
    "novelai1_cropped.png": {
        "generator": "novelai",
        "prompt": "masterpiece, best quality,  cat, space, icon",
        "seed": 2253955223,
        "steps": 50,
        "sampler": "k_euler_ancestral",
        "cfg_scale": 10.0,
        "model": "Stable Diffusion 1D44365E",
    },
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_metadata(name: str) -> None:
    """Each real file from A1111 (stealth), Fooocus, InvokeAI (all three forms) and NovelAI
    gives the values its front end embedded, and keeps its raw texts in metadata_json."""
    info = read(MEDIA / name)
    check(info, REAL[name])
    assert json.loads(info.metadata_json or "")


def test_novelai_negative_prompt_comes_from_uc() -> None:
    """NovelAI's negative prompt is the Comment's `uc`."""
    info = read(MEDIA / "novelai1_cropped.png")
    assert info.negative_prompt is not None
    assert info.negative_prompt.startswith("lowres, bad anatomy, bad hands, text, error")
    assert set(json.loads(info.metadata_json or "")) >= {"Software", "Comment", "Description"}


def test_invokeai_prefers_the_newest_form() -> None:
    """A file with both `sd-metadata` and `Dream` is read from `sd-metadata` (it names the
    model), both raw texts kept."""
    raw = json.loads(read(MEDIA / "invokeai_sdmeta1.png").metadata_json or "")
    assert set(raw) == {"sd-metadata", "Dream"}


@pytest.mark.parametrize("name", ["empty_file.png", "empty_image.jpg", "empty_image.png"])
def test_bad_files_never_raise(name: str) -> None:
    """Broken files and images without metadata give no metadata and never raise; an empty
    file says it is not a PNG, a valid image without metadata is no error (it gets its row)."""
    info = read(MEDIA / "bad" / name)
    assert info.generator is None and info.prompt is None
    if name == "empty_file.png":
        assert info.metadata_error == "malformed: not a PNG file"
    else:
        assert info.metadata_error is None and (info.width, info.height) == (1, 1)


def test_text_chunk_after_image_data_is_read() -> None:
    """A text chunk after IDAT is valid PNG: its infotext is read."""
    info = read(MEDIA / "bad" / "text_after_idat.png")
    check(info, {"generator": "a1111", "prompt": "photo of a duck", "seed": 235284042})


# -- ComfyUI graphs ------------------------------------------------------------------------------
def node_text(graph: dict[str, Any], key: str) -> str:
    return str(graph[key]["inputs"]["text"]).strip()


def png_texts(path: Path) -> dict[str, str]:
    """Return a PNG's tEXt chunks (the fixtures' ComfyUI graphs)."""
    data, texts, position = path.read_bytes(), {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"tEXt":
            key, _sep, value = data[position + 8 : position + 8 + length].partition(b"\0")
            texts[key.decode()] = value.decode("latin-1")
        position += 12 + length
    return texts


def test_six_samplers_each_with_its_traced_prompts() -> None:
    """noisy_latents (six samplers: four first stages composited, a second stage, an upscale
    pass): every sampler is listed with its settings and the prompts traced from its own
    inputs; the flat columns' prompts are the second stage's (the earliest sampler whose
    output is saved, a KSamplerAdvanced that adds no noise: no seed of its own), and the
    headline seed, sampler and settings the stage that added the noise on its latent path:
    the composition's canvas (node 60), not an empty seed (issue 28)."""
    path = MEDIA / "noisy_latents_3_subjects_cropped.png"
    graph = json.loads(png_texts(path)["prompt"])
    info = read(path)
    assert info.samplers is not None
    by_id = {entry["node_id"]: entry for entry in info.samplers}
    assert list(by_id) == ["24", "57", "58", "60", "64", "73"]
    for key, entry in by_id.items():
        inputs = graph[key]["inputs"]
        assert entry["class_type"] == graph[key]["class_type"]
        assert entry["positive"] == node_text(graph, inputs["positive"][0])
        assert entry["negative"] == node_text(graph, inputs["negative"][0])
        assert entry["steps"] == inputs["steps"] and entry["cfg"] == inputs["cfg"]
        assert entry["sampler_name"] == inputs["sampler_name"]
        assert entry["scheduler"] == inputs["scheduler"]
        assert entry["model"] == "Anything-V3.0.ckpt"
    assert by_id["57"]["seed"] == 890421140397575 and by_id["24"]["seed"] == 1084614416978598
    assert by_id["24"]["denoise"] == 0.54 and by_id["57"]["denoise"] is None
    assert by_id["58"]["seed"] is None  # add_noise "disable": the seed is not used
    check(
        info,
        {
            "generator": "comfyui",
            "prompt": by_id["58"]["positive"],
            "negative_prompt": by_id["58"]["negative"],
            "steps": by_id["60"]["steps"],
            "sampler": by_id["60"]["sampler_name"],
            "cfg_scale": by_id["60"]["cfg"],
            "model": "Anything-V3.0.ckpt",
            "vae": "vae-ft-mse-840000-ema-pruned.safetensors",
            "seed": 512136241112371,
        },
    )
    raw = json.loads(info.metadata_json or "")
    assert json.loads(raw["prompt"]) == graph and "workflow" in raw


def test_two_pass_graph_lists_both_passes_and_keeps_the_first_saved() -> None:
    """unclip_2pass saves both passes: both samplers are listed, each with its own model and
    prompts; the flat columns keep the first pass (the second refines its saved image)."""
    info = read(REAL_MEDIA / "unclip_2pass_cropped.png")
    assert info.samplers is not None
    first, second = info.samplers
    assert (first["node_id"], second["node_id"]) == ("3", "41")
    assert second["model"] == "cardosAnimated_v20.safetensors" and second["seed"] == 119080905858220
    assert second["positive"] == "beautiful scenery landscape outdoors mountains"
    assert first["positive"] == info.prompt and info.seed == 1106257833005336
    assert info.vae == "kl-f8-anime2.ckpt" and info.denoise == 1.0


def test_custom_sampler_sdxl_graph() -> None:
    """SamplerCustomAdvanced: seed from RandomNoise (through a primitive), cfg and prompts from
    the CFGGuider, steps/scheduler/denoise from BasicScheduler, sampler from KSamplerSelect
    (itself no sampler); positive and negative split at a ControlNetApplyAdvanced (slot 0 / 1);
    text_g and text_l of CLIPTextEncodeSDXL; a text reached through an unknown custom node;
    the LoRA of a Power Lora Loader that is on, not the one that is off."""
    info = read(MEDIA / "comfy_sdxl_custom_sampler.png")
    check(
        info,
        {
            "generator": "comfyui",
            "prompt": "a lighthouse at dusk\noil painting\nvolumetric light",
            "negative_prompt": "people, text",
            "seed": 987654321,
            "steps": 28,
            "cfg_scale": 4.5,
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": "sd_xl_base_1.0.safetensors",
            "loras": [{"name": "pixel-art-xl.safetensors", "weight": 0.8}],
            "width": 32,
            "height": 24,
        },
    )
    assert info.samplers is not None and len(info.samplers) == 1
    assert info.samplers[0]["class_type"] == "SamplerCustomAdvanced"


def graph_info(graph: dict[str, Any]) -> GenerationInfo:
    info = parse_comfy_graph(json.dumps(graph), None)
    assert info is not None
    return info


def encode(text: str) -> dict[str, Any]:
    return {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}}


def ksampler(seed: int, latent: list[Any], model: str = "1") -> dict[str, Any]:
    return {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed,
            "steps": 20,
            "cfg": 7,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": [model, 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": latent,
        },
    }


HIRES = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
    "2": encode("a cat"),
    "3": encode("a dog"),
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 8, "height": 8}},
    "5": ksampler(1, ["4", 0]),
    "6": {"class_type": "LatentUpscale", "inputs": {"samples": ["5", 0]}},
    "7": ksampler(2, ["6", 0], model="8"),
    "8": {
        "class_type": "LoraLoader",
        "inputs": {"lora_name": "b.safetensors", "strength_model": 0.5, "model": ["9", 0]},
    },
    "9": {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"lora_name": "c.safetensors", "strength_model": 1, "model": ["1", 0]},
    },
    "10": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
    "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0]}},
}


def test_hires_fix_graph_takes_the_first_pass_seed_and_the_saved_pass_denoise() -> None:
    """With one SaveImage after a second pass: the headline seed is the first pass's (it
    made the composition), the denoise the saved pass's, the LoRAs those of every pass on
    the path (the second pass's, nearest first); both samplers are listed."""
    info = graph_info(HIRES)
    assert info.seed == 1 and info.denoise == 0.5 and info.model == "base.safetensors"
    assert info.loras == [
        {"name": "b.safetensors", "weight": 0.5},
        {"name": "c.safetensors", "weight": 1.0},
    ]
    assert [entry["seed"] for entry in info.samplers or []] == [1, 2]


def test_graph_without_save_node_takes_the_last_sampler() -> None:
    """Without a save node, the last sampler in graph order is the saved one (its denoise),
    and its first pass gives the seed."""
    graph = {key: node for key, node in HIRES.items() if key != "11"}
    info = graph_info(graph)
    assert (info.seed, info.denoise) == (1, 0.5)


def test_text_reached_through_links_and_string_nodes() -> None:
    """A prompt whose text input links to a concatenation of primitive strings."""
    graph = dict(HIRES)
    graph["2"] = {"class_type": "CLIPTextEncode", "inputs": {"text": ["12", 0], "clip": ["1", 1]}}
    graph["12"] = {
        "class_type": "StringConcatenate",
        "inputs": {"string_a": ["13", 0], "string_b": "b"},
    }
    graph["13"] = {"class_type": "PrimitiveString", "inputs": {"value": "a"}}
    assert graph_info(graph).prompt == "a b"


# -- generated samples: video, animations, other front ends -------------------------------------
VIDEO_COLUMNS = {
    "generator": "comfyui",
    "prompt": "a paper boat on a river, watercolor",
    "negative_prompt": "blurry, lowres",
    "seed": 424242,
    "steps": 12,
    "sampler": "euler_ancestral",
    "scheduler": "karras",
    "cfg_scale": 6.5,
    "model": "dreamshaper_8.safetensors",
    "vae": "vae-ft-mse-840000-ema-pruned.safetensors",
    "loras": [{"name": "add_detail.safetensors", "weight": 0.6}],
    "width": 64,
    "height": 64,
}
VIDEOS = {
    "comfy_vhs_h264.mp4": (2.0, 8.0),
    "comfy_vhs_metadata_tags.mp4": (1.0, 12.0),
    "comfy_vhs.webm": (1.0, 10.0),
    "comfy_savevideo.mkv": (0.25, 24.0),
    "comfy_savevideo.mp4": (0.2, 25.0),
    "comfy_animated.webp": (0.996, 6.024),  # 6 frames of int(1000 / 6) ms
    "comfy_animated.png": (None, None),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_comfy_video_and_animation(name: str) -> None:
    """VideoHelperSuite MP4 (`©cmt`, and `keys` with use_metadata_tags) and WebM (`COMMENT`),
    SaveVideo-style MKV/MP4 (`prompt`/`workflow` tags), animated WebP (EXIF Model/Make) and
    animated PNG (`comf` chunks): the graph, its sampler, duration and frame rate, and the raw
    prompt and workflow in metadata_json."""
    info = read(MEDIA / name)
    duration, rate = VIDEOS[name]
    check(info, {**VIDEO_COLUMNS, "duration_s": duration, "frame_rate": rate})
    raw = json.loads(info.metadata_json or "")
    assert json.loads(raw["prompt"])["9"]["class_type"] == "VHS_VideoCombine"
    assert json.loads(raw["workflow"])["version"] == 0.4


A1111_EXTRAS = {
    "generator": "a1111",
    "prompt": "a castle on a hill, <lora:castleLora:0.8>, <lora:detailTweaker:1.2>",
    "negative_prompt": "fog",
    "seed": 1234567,
    "steps": 24,
    "sampler": "DPM++ 2M",
    "scheduler": "Karras",
    "cfg_scale": 6.0,
    "model": "juggernaut_v9",
    "vae": "sdxl_vae.safetensors",
    "denoise": 0.4,
    "loras": [{"name": "castleLora", "weight": 0.8}, {"name": "detailTweaker", "weight": 1.2}],
}
SWARM = {
    "generator": "swarmui",
    "prompt": "a red fox in snow",
    "negative_prompt": "cartoon",
    "seed": 31337,
    "steps": 30,
    "sampler": "dpmpp_2m",
    "scheduler": "karras",
    "cfg_scale": 7.5,
    "model": "OfficialStableDiffusion/sd_xl_base_1.0",
    "vae": "sdxl_vae",
    "loras": [{"name": "foxy", "weight": 0.7}, {"name": "snow_style", "weight": 1.0}],
    "width": 64,
    "height": 64,
}
OTHERS = {
    "a1111.webp": {**A1111_EXTRAS, "width": 48, "height": 32},
    "a1111_sidecar.png": {**A1111_EXTRAS, "width": 40, "height": 30},
    "swarmui.png": SWARM,
    "swarmui_sidecar.jpg": SWARM,
}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_front_ends_and_sidecars(name: str) -> None:
    """A1111 WebP (EXIF UserComment) and `.txt` sidecar with LoRAs (prompt tags and `Lora
    hashes`), VAE, schedule type and denoising strength; SwarmUI `parameters` JSON and `.json`
    sidecar. Lists stay lists in as_dict (the catalog JSON-encodes them)."""
    info = read(MEDIA / name)
    check(info, OTHERS[name])
    assert isinstance(info.as_dict()["loras"], list)


def test_lora_hashes_add_loras_without_weights() -> None:
    """A LoRA named only in `Lora hashes` is listed without a weight."""
    from forge_syncd.events.metadata import parse_infotext

    info = parse_infotext('x <lora:a:0.5>\nSteps: 1, Lora hashes: "a: 01, b: 02"')
    assert info.loras == [{"name": "a", "weight": 0.5}, {"name": "b", "weight": None}]


# -- stealth PNG info, hand-made --------------------------------------------------------------------
def filtered(kind: int, row: bytes, above: bytes, bpp: int = 4) -> bytes:
    """PNG-filter one scanline with filter `kind` (the encoder's side)."""
    out = bytearray()
    for i, value in enumerate(row):
        left = row[i - bpp] if i >= bpp else 0
        up = above[i]
        corner = above[i - bpp] if i >= bpp else 0
        if kind == 0:
            guess = 0
        elif kind == 1:
            guess = left
        elif kind == 2:
            guess = up
        elif kind == 3:
            guess = (left + up) // 2
        else:
            p = left + up - corner
            guess = min(
                (abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner)
            )[2]
        out.append((value - guess) & 0xFF)
    return bytes([kind]) + bytes(out)


def stealth_png(
    payload: bytes, signature: bytes, size: tuple[int, int], claimed: int | None = None
) -> bytes:
    """An RGBA PNG whose alpha low bits (down the columns) hold signature, length, payload;
    every filter type is used, rows cycling through them."""
    width, height = size
    bits = "".join(f"{b:08b}" for b in signature)
    bits += f"{(len(payload) * 8 if claimed is None else claimed):032b}"
    bits += "".join(f"{b:08b}" for b in payload)
    pixels = [
        [[(x * 7 + y) & 0xFF, (y * 3) & 0xFF, 99, 254] for x in range(width)] for y in range(height)
    ]
    for k, bit in enumerate(bits):
        x, y = divmod(k, height)
        pixels[y][x][3] = 254 | int(bit)
    raw, above = bytearray(), bytes(width * 4)
    for y in range(height):
        row = bytes(v for pixel in pixels[y] for v in pixel)
        raw += filtered(y % 5, row, above)
        above = row
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return png((b"IHDR", ihdr), (b"IDAT", zlib.compress(bytes(raw))), (b"IEND", b""))


INFOTEXT = "a lighthouse\nNegative prompt: fog\nSteps: 9, Sampler: Euler, Seed: 77, Model: m"


@pytest.mark.parametrize("compressed", [False, True])
def test_stealth_info_through_every_png_filter(tmp_path: Path, compressed: bool) -> None:
    """Stealth infotext, plain (`stealth_pnginfo`) or gzip (`stealth_pngcomp`), spread over
    several columns of rows filtered with None, Sub, Up, Average and Paeth, is read back."""
    payload = gzip.compress(INFOTEXT.encode()) if compressed else INFOTEXT.encode()
    signature = b"stealth_pngcomp" if compressed else b"stealth_pnginfo"
    path = tmp_path / "s.png"
    path.write_bytes(stealth_png(payload, signature, (40, 37)))
    check(read(path), {"generator": "a1111", "prompt": "a lighthouse", "seed": 77, "width": 40})


def test_stealth_length_past_the_image_is_refused(tmp_path: Path) -> None:
    """A stealth header claiming 2^32 - 1 bits (sd-parsers loops forever on it) is refused
    at once with a reason."""
    path = tmp_path / "s.png"
    path.write_bytes(stealth_png(b"", b"stealth_pngcomp", (16, 160), claimed=2**32 - 1))
    info = read(path)
    assert info.metadata_error == "malformed: stealth PNG info of 4294967295 bits"
    assert info.generator is None and (info.width, info.height) == (16, 160)


def test_stealth_decoding_is_held_to_the_cpu_budget(tmp_path: Path) -> None:
    """Reading stealth bits runs under the file's CPU budget: with none left it stops, says
    so, and keeps the image size."""
    path = tmp_path / "s.png"
    path.write_bytes(stealth_png(INFOTEXT.encode() * 20, b"stealth_pnginfo", (64, 200)))
    assert read(path).generator == "a1111"
    info = read(path, MetadataBudget(cpu_seconds=0.0))
    assert (info.metadata_error or "").startswith("over_time: over 0 s of CPU in")
    assert info.generator is None and (info.width, info.height) == (64, 200)


def test_image_without_stealth_info_costs_the_first_rows_only(tmp_path: Path) -> None:
    """A plain RGBA PNG gives no metadata and no error (its signature does not match)."""
    path = tmp_path / "plain.png"
    path.write_bytes(stealth_png(b"x", b"not_the_header!", (8, 300)))
    info = read(path)
    assert info.generator is None and info.metadata_error is None


# -- hostile containers ----------------------------------------------------------------------------
def box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def mp4(*boxes: bytes) -> bytes:
    return box(b"ftyp", b"isom\0\0\0\0isom") + b"".join(boxes)


def ilst_item(name: bytes, text: bytes) -> bytes:
    return box(name, box(b"data", b"\0\0\0\x01\0\0\0\0" + text))


def vint(value: int) -> bytes:
    return (0x01 << 56 | value).to_bytes(8, "big")


def ebml(element: int, body: bytes) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big") + vint(len(body)) + body


def deep_boxes(depth: int) -> bytes:
    """`moov` boxes nested `depth` deep (the walk stops descending at MAX_DEPTH)."""
    nested = box(b"udta", b"")
    for _ in range(depth):
        nested = box(b"moov", nested)
    return nested


MKV_HEAD = ebml(0x1A45DFA3, ebml(0x4282, b"webm"))
GRAPH = json.dumps({"1": ksampler(5, ["1", 0])})


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("short.mp4", mp4()[:10], None),
        (
            "zero_box.mp4",
            mp4(struct.pack(">I4s", 3, b"moov")),
            "malformed: MP4 box b'moov' of 3 bytes",
        ),
        (
            "many_boxes.mp4",
            mp4(box(b"moov", box(b"free", b"") * 20_000)),
            "too_large: over 10000 MP4 boxes",
        ),
        ("deep.mp4", mp4(deep_boxes(200)), None),
        (
            "huge_tag.mp4",
            mp4(
                box(
                    b"moov",
                    box(
                        b"udta",
                        box(
                            b"meta",
                            b"\0" * 4
                            + box(
                                b"ilst",
                                struct.pack(">I4s", 2**31, b"\xa9cmt") + box(b"data", b"\0" * 8),
                            ),
                        ),
                    ),
                )
            ),
            None,
        ),
        ("not_mp4.mp4", b"\0\0\0\x08junk" * 4, "malformed: not an MP4 file"),
        ("not_mkv.mkv", b"\x1a\x45\xdf", "malformed: not a Matroska file"),
        (
            "huge_tag.mkv",
            MKV_HEAD
            + ebml(
                0x18538067,
                ebml(
                    0x1254C367,
                    ebml(
                        0x7373, ebml(0x67C8, ebml(0x45A3, b"COMMENT") + b"\x44\x87" + vint(2**40))
                    ),
                ),
            ),
            "too_large: Matroska tag of 1099511627776 bytes skipped",
        ),
        (
            "many_elements.mkv",
            MKV_HEAD + ebml(0x18538067, ebml(0xEC, b"") * 120_000),
            "too_large: over 100000 Matroska elements",
        ),
        (
            "unknown_sizes.webm",
            MKV_HEAD + b"\x18\x53\x80\x67\xff" + b"\x1f\x43\xb6\x75\xff" * 50,
            None,
        ),
        ("not_webp.webp", b"RIFF\0\0\0\0WEBX", "malformed: not a WebP file"),
        (
            "big_exif.webp",
            b"RIFF" + struct.pack("<I", 2**31) + b"WEBP" + b"EXIF" + struct.pack("<I", 2**30),
            "too_large: WebP EXIF chunk of 1073741824 bytes",
        ),
        (
            "bad_exif.webp",
            b"RIFF\xff\xff\xff\x7fWEBPEXIF\x20\0\0\0MM\0\x2a\0\0\0\x08\xff\xff"
            + b"\x01\x10\0\x02\xff\xff\xff\xff\0\0\0\0" * 2,
            None,
        ),
        (
            "exif_loop.jpg",
            b"\xff\xd8\xff\xe1\x00\x20Exif\0\0II\x2a\0\x08\0\0\0\xff\xff"
            + b"\x69\x87\x04\0\x01\0\0\0\x08\0\0\0",
            None,
        ),
    ],
)
def test_hostile_containers_are_read_within_the_budget(
    tmp_path: Path, name: str, data: bytes, reason: str | None
) -> None:
    """Truncated, looping, oversized and malformed MP4, Matroska, WebP and EXIF data give no
    metadata and never raise; what was cut off or refused is said, nothing runs out of CPU."""
    path = tmp_path / name
    path.write_bytes(data)
    info = read(path)
    assert info.generator is None
    assert info.metadata_error == reason or (reason is None and info.metadata_error is None)


def test_mp4_tag_over_the_text_cap_is_skipped_and_said(tmp_path: Path) -> None:
    """An MP4 comment larger than the text allowance is skipped with a note, the next tag
    still read."""
    big = ilst_item(b"\xa9cmt", b"x" * 2048)
    prompt = ilst_item(b"\xa9nam", b"title")
    meta = box(b"meta", b"\0" * 4 + box(b"hdlr", b"\0" * 20) + box(b"ilst", big + prompt))
    path = tmp_path / "t.mp4"
    path.write_bytes(mp4(box(b"moov", box(b"udta", meta))))
    info = read(path, MetadataBudget(max_text=1024))
    assert info.metadata_error == "too_large: MP4 tag of 2048 bytes skipped"


def test_many_samplers_sharing_a_huge_conditioning_stay_in_budget() -> None:
    """2000 samplers all fed by one node combining 2000 text nodes: tracing is memoised, so
    the file is read within its CPU budget (no over_time), each sampler with its prompt."""
    count = 2000
    graph: dict[str, Any] = {
        f"s{n}": {
            "class_type": "KSampler",
            "inputs": {"seed": n, "positive": ["c", 0], "negative": ["c", 0]},
        }
        for n in range(count)
    }
    graph["c"] = {"class_type": "Combine", "inputs": {f"i{n}": [f"t{n}", 0] for n in range(count)}}
    graph.update({f"t{n}": encode(f"word{n}") for n in range(count)})
    from forge_syncd.events.budget import DEFAULT_BUDGET, Meter

    meter = Meter(DEFAULT_BUDGET)
    info = parse_comfy_graph(json.dumps(graph), None, meter)
    assert meter.error is None and info is not None and info.samplers is not None
    assert len(info.samplers) == 101  # the first 100 in graph order, then the final one
    assert info.samplers[-1]["node_id"] == "s1999" and info.seed == 1999  # last by graph order
    assert (info.prompt or "").split("\n")[:2] == ["word0", "word1"]
    assert len((info.prompt or "").split("\n")) == 64  # MAX_PROMPT_PARTS


def test_sidecar_over_the_text_cap_is_skipped_and_said(tmp_path: Path) -> None:
    """A `.txt` sidecar larger than the text allowance is not read, and that is said."""
    (tmp_path / "x.png").write_bytes(png((b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))))
    (tmp_path / "x.txt").write_text("p\nSteps: 3\n" + "x" * 5000)
    info = read(tmp_path / "x.png", MetadataBudget(max_text=1024))
    assert info.generator is None
    assert info.metadata_error == "too_large: txt sidecar over 1024 bytes skipped"


SAMPLES = sorted(
    path
    for path in MEDIA.rglob("*")
    if path.suffix in (".png", ".jpg", ".webp", ".mp4", ".webm", ".mkv")
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=8),
    st.integers(0, 1 << 16),
)
def test_mutated_samples_never_raise(
    tmp_path_factory: pytest.TempPathFactory, sample: Path, flips: list[tuple[int, int]], cut: int
) -> None:
    """Every sample with random bytes changed and cut short at a random place is read without
    an exception; any problem is reported as one of the MetadataProblem kinds."""
    data = bytearray(sample.read_bytes())
    for position, value in flips:
        if data:
            data[position % len(data)] = value
    path = tmp_path_factory.mktemp("mutated") / sample.name
    path.write_bytes(bytes(data[: max(cut, 8)]))
    info = read(path)
    for problem in (info.metadata_error or "").split("; "):
        assert problem == "" or problem.startswith(KINDS), problem


def test_comfy_saver_with_a1111_parameters_keeps_the_graph(tmp_path: Path) -> None:
    """A ComfyUI saver that also writes A1111-style `parameters` beside `prompt` and
    `workflow`: the graph is read (it says more), raw prompt and workflow kept."""
    path = tmp_path / "both.png"
    graph = json.dumps({"1": ksampler(5, ["1", 0]), "2": encode("a cat"), "3": encode("a dog")})
    path.write_bytes(
        png(
            (b"tEXt", b"parameters\0a cat\nSteps: 20, Seed: 5"),
            (b"tEXt", b"prompt\0" + graph.encode()),
            (b"tEXt", b"workflow\0{}"),
        )
    )
    info = read(path)
    check(info, {"generator": "comfyui", "prompt": "a cat", "negative_prompt": "a dog", "seed": 5})
    assert set(json.loads(info.metadata_json or "")) == {"prompt", "workflow"}


def _stage(
    model: str, latent: list[Any], add_noise: str, seed: int, sampler: str, positive: str
) -> dict[str, Any]:
    return {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "model": [model, 0],
            "add_noise": add_noise,
            "noise_seed": seed,
            "steps": 30,
            "cfg": 7.0,
            "sampler_name": sampler,
            "scheduler": "normal",
            "positive": [positive, 0],
            "negative": ["neg", 0],
            "latent_image": latent,
            "start_at_step": 0,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        },
    }


def two_stage_graph(first_model: str, second_model: str) -> dict[str, Any]:
    """An API graph of two chained KSamplerAdvanced stages (SDXL base + refiner; Wan 2.2
    high-noise + low-noise): the first adds the noise, the second none."""

    def text(words: str) -> dict[str, Any]:
        return {"class_type": "CLIPTextEncode", "inputs": {"text": words, "clip": ["ckpt1", 1]}}

    return {
        "ckpt1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": first_model}},
        "ckpt2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": second_model}},
        "pos1": text("a lighthouse at dusk"),
        "pos2": text("a lighthouse at dusk, sharp"),
        "neg": text("blurry"),
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024}},
        "base": _stage("ckpt1", ["empty", 0], "enable", 4242, "euler", "pos1"),
        "refiner": _stage("ckpt2", ["base", 0], "disable", 9999, "dpmpp_2m", "pos2"),
        "decode": {
            "class_type": "VAEDecode",
            "inputs": {"samples": ["refiner", 0], "vae": ["ckpt2", 2]},
        },
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0]}},
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sd_xl_base_1.0.safetensors", "sd_xl_refiner_1.0.safetensors"),
        ("wan2.2_t2v_high_noise_14B_fp8.safetensors", "wan2.2_t2v_low_noise_14B_fp8.safetensors"),
    ],
)
def test_a_two_stage_graph_takes_its_headline_from_the_stage_that_adds_the_noise(
    first: str, second: str
) -> None:
    """SDXL base + refiner, and a two-stage video model (high noise, then low noise): the
    catalog's seed, model and sampler are the first stage's (the refiner adds no noise: its
    seed is unused, and its model is not what a user searches for); the prompt is the saved
    stage's; both stages stay in `samplers`. Before, seed was empty and model the
    refiner's."""
    info = parse_comfy_graph(json.dumps(two_stage_graph(first, second)), None)
    assert info is not None and info.samplers is not None
    assert [entry["node_id"] for entry in info.samplers] == ["base", "refiner"]
    assert (info.seed, info.model, info.sampler) == (4242, first, "euler")
    assert info.prompt == "a lighthouse at dusk, sharp" and info.negative_prompt == "blurry"
