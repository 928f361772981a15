"""Generation metadata read from the media file itself, for the catalog.

A1111/Forge write their "infotext" into a PNG text chunk `parameters` (JPEG: the EXIF
UserComment); ComfyUI writes its API graph into a PNG chunk `prompt`. Files are untrusted:
every read is bounded, a text chunk over MAX_TEXT is skipped, and anything malformed gives
`None` rather than an exception.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import asdict, dataclass
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT = 1024 * 1024  # a larger text chunk is not metadata we want to parse
MAX_SCAN = 64 * 1024 * 1024  # never read more than this much of a file looking for chunks
MAX_GRAPH_DEPTH = 64


@dataclass
class GenerationInfo:
    generator: str | None = None  # a1111 | comfyui
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    sampler: str | None = None
    cfg_scale: float | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    metadata_json: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- containers -------------------------------------------------------------------------
def png_text_and_size(path: bytes) -> tuple[dict[str, str], tuple[int, int] | None]:
    """Return the PNG's text chunks (tEXt, zTXt, iTXt) and its (width, height)."""
    texts: dict[str, str] = {}
    size = None
    with open(path, "rb") as handle:
        if handle.read(8) != PNG_SIGNATURE:
            return texts, None
        scanned = 8
        while scanned < MAX_SCAN:
            header = handle.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            scanned += 12 + length
            if kind == b"IEND":
                break
            if kind not in (b"IHDR", b"tEXt", b"zTXt", b"iTXt") or length > MAX_TEXT:
                handle.seek(length + 4, 1)
                continue
            body = handle.read(length)
            handle.seek(4, 1)  # CRC
            if len(body) < length:
                break
            if kind == b"IHDR" and length >= 8:
                size = struct.unpack(">II", body[:8])
            else:
                _add_text(kind, body, texts)
    return texts, size


def _add_text(kind: bytes, body: bytes, texts: dict[str, str]) -> None:
    key, sep, rest = body.partition(b"\0")
    if not sep:
        return
    try:
        if kind == b"tEXt":
            value = rest.decode("latin-1")
        elif kind == b"zTXt":
            value = _inflate(rest[1:]).decode("latin-1")
        else:  # iTXt: compressed flag, method, language\0, translated keyword\0, text
            compressed = rest[:1] == b"\x01"
            text = rest[2:].split(b"\0", 2)[-1]
            value = (_inflate(text) if compressed else text).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, ValueError):
        return
    texts[key.decode("latin-1")] = value


def _inflate(data: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    out = decompressor.decompress(data, MAX_TEXT)
    if decompressor.unconsumed_tail:
        raise ValueError("compressed text chunk too large")
    return out


def jpeg_comment_and_size(path: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """Return the EXIF UserComment text and (width, height) of a JPEG."""
    comment, size = None, None
    with open(path, "rb") as handle:
        if handle.read(2) != b"\xff\xd8":
            return None, None
        for _ in range(256):
            marker = handle.read(4)
            if len(marker) < 4 or marker[0] != 0xFF:
                break
            kind, length = marker[1], struct.unpack(">H", marker[2:])[0]
            if kind == 0xDA or length < 2:  # start of scan: no more metadata
                break
            body = handle.read(min(length - 2, MAX_TEXT))
            handle.seek(length - 2 - len(body), 1)
            if kind == 0xE1 and body.startswith(b"Exif\0\0"):
                comment = _exif_user_comment(body[6:])
            elif kind in (0xC0, 0xC1, 0xC2) and len(body) >= 5:
                height, width = struct.unpack(">HH", body[1:5])
                size = (width, height)
    return comment, size


def _exif_user_comment(tiff: bytes) -> str | None:
    """Follow IFD0 -> Exif IFD (0x8769) -> UserComment (0x9286)."""
    order = {b"MM": ">", b"II": "<"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    try:
        ifd = struct.unpack(order + "I", tiff[4:8])[0]
        exif = _ifd_value(tiff, order, ifd, 0x8769)
        if exif is None:
            return None
        raw = _ifd_value(tiff, order, struct.unpack(order + "I", exif[:4])[0], 0x9286)
    except struct.error:
        return None
    if raw is None or len(raw) < 8:
        return None
    charset, text = raw[:8], raw[8:]
    if charset.startswith(b"UNICODE"):
        return text.decode("utf-16-be" if order == ">" else "utf-16-le", "replace").rstrip("\0")
    return text.decode("utf-8", "replace").rstrip("\0")


def _ifd_value(tiff: bytes, order: str, offset: int, tag: int) -> bytes | None:
    """Return the raw bytes of `tag` in the IFD at `offset` (4-byte values inline)."""
    count = struct.unpack(order + "H", tiff[offset : offset + 2])[0]
    for n in range(min(count, 512)):
        entry = tiff[offset + 2 + 12 * n : offset + 14 + 12 * n]
        if len(entry) < 12:
            return None
        entry_tag, kind, items = struct.unpack(order + "HHI", entry[:8])
        if entry_tag != tag:
            continue
        width = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}.get(kind, 1)
        size = width * items
        if size <= 4:
            return entry[8 : 8 + size]
        start = struct.unpack(order + "I", entry[8:12])[0]
        return tiff[start : start + size]
    return None


# -- A1111 / Forge infotext ---------------------------------------------------------------
PAIR = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> GenerationInfo:
    """Given A1111/Forge "parameters" text, return what it says."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and re.match(r"^\s*Steps:", lines[-1]):
        settings = {k.strip(): v.strip().strip('"') for k, v in PAIR.findall(lines.pop())}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    into_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            into_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative_lines if into_negative else prompt_lines).append(line)
    return GenerationInfo(
        generator="a1111",
        prompt="\n".join(prompt_lines).strip() or None,
        negative_prompt="\n".join(negative_lines).strip() or None,
        seed=_int(settings.get("Seed")),
        steps=_int(settings.get("Steps")),
        sampler=settings.get("Sampler"),
        cfg_scale=_float(settings.get("CFG scale")),
        model=settings.get("Model"),
        metadata_json=json.dumps({"parameters": text}),
    )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


# -- ComfyUI API graph ------------------------------------------------------------------------
def parse_comfy_graph(prompt_json: str, workflow_json: str | None) -> GenerationInfo | None:
    """Given ComfyUI's `prompt` chunk (the API graph), return the first sampler's settings,
    its positive and negative text (followed through the links) and its checkpoint."""
    try:
        graph = json.loads(prompt_json)
    except ValueError:
        return None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) for n in graph.values()):
        return None
    sampler = _base_sampler(graph)
    raw = {"prompt": prompt_json, **({"workflow": workflow_json} if workflow_json else {})}
    info = GenerationInfo(generator="comfyui", metadata_json=json.dumps(raw))
    if sampler is None:
        return info
    inputs = _inputs(sampler)
    info.seed = _int(inputs.get("seed", inputs.get("noise_seed")))
    info.steps = _int(inputs.get("steps"))
    info.cfg_scale = _float(inputs.get("cfg"))
    sampler_name = inputs.get("sampler_name")
    info.sampler = sampler_name if isinstance(sampler_name, str) else None
    info.prompt = _texts(graph, inputs.get("positive"))
    info.negative_prompt = _texts(graph, inputs.get("negative"))
    info.model = _checkpoint(graph, inputs.get("model"))
    return info


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and link and isinstance(link[0], str | int):
        node = graph.get(str(link[0]))
        if isinstance(node, dict):
            return node
    return None


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _is_sampler(node: dict[str, Any]) -> bool:
    kind = node.get("class_type")
    return isinstance(kind, str) and ("KSampler" in kind or kind.startswith("SamplerCustom"))


def _base_sampler(graph: dict[str, Any]) -> dict[str, Any] | None:
    """The sampler that starts the chain: its latent does not come from another sampler."""
    samplers: list[tuple[str, dict[str, Any]]] = sorted(
        ((str(key), node) for key, node in graph.items() if _is_sampler(node)),
        key=lambda item: (len(item[0]), item[0]),
    )
    for _key, node in samplers:
        if not _reaches_sampler(graph, _inputs(node).get("latent_image"), 0, set()):
            return node
    return samplers[0][1] if samplers else None


def _reaches_sampler(graph: dict[str, Any], link: Any, depth: int, seen: set[str]) -> bool:
    node = _node(graph, link)
    if node is None or depth > MAX_GRAPH_DEPTH or str(link[0]) in seen:
        return False
    seen.add(str(link[0]))
    if _is_sampler(node):
        return True
    inputs = _inputs(node)
    return any(_reaches_sampler(graph, value, depth + 1, seen) for value in inputs.values())


def _texts(graph: dict[str, Any], link: Any) -> str | None:
    """Collect the text of every CLIP text node feeding a conditioning input, in order."""
    found: list[str] = []
    _collect_texts(graph, link, 0, set(), found)
    return "\n".join(t.strip() for t in found if t.strip()) or None


def _collect_texts(
    graph: dict[str, Any], link: Any, depth: int, seen: set[str], found: list[str]
) -> None:
    node = _node(graph, link)
    if node is None or depth > MAX_GRAPH_DEPTH or str(link[0]) in seen:
        return
    seen.add(str(link[0]))
    inputs = _inputs(node)
    kind = node.get("class_type")
    if isinstance(kind, str) and "CLIPTextEncode" in kind:
        for key in ("text", "text_g", "text_l"):
            text = _resolve_string(graph, inputs.get(key), depth + 1)
            if text:
                found.append(text)
                break
        return
    for key, value in inputs.items():
        if key not in ("clip", "model", "vae", "clip_vision", "image", "pixels"):
            _collect_texts(graph, value, depth + 1, seen, found)


def _resolve_string(graph: dict[str, Any], value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        return value
    node = _node(graph, value)
    if node is None or depth > MAX_GRAPH_DEPTH:
        return None
    inputs = _inputs(node)
    for candidate in ("text", "string", "value"):
        if candidate in inputs:
            return _resolve_string(graph, inputs[candidate], depth + 1)
    return None


def _checkpoint(graph: dict[str, Any], link: Any) -> str | None:
    for _ in range(MAX_GRAPH_DEPTH):
        node = _node(graph, link)
        if node is None:
            return None
        inputs = _inputs(node)
        for key in ("ckpt_name", "unet_name", "model_name"):
            if isinstance(inputs.get(key), str):
                return str(inputs[key])
        link = inputs.get("model")
    return None


# -- entry point ------------------------------------------------------------------------------
def read_generation_info(path: bytes) -> GenerationInfo:
    """Given a local media file, return its generation metadata (empty if none or unreadable).

    Never raises for a malformed file; raises OSError only if the file cannot be opened.
    """
    lower = path.lower()
    try:
        if lower.endswith(b".png"):
            texts, size = png_text_and_size(path)
            info = _from_png_texts(texts)
        elif lower.endswith((b".jpg", b".jpeg")):
            comment, size = jpeg_comment_and_size(path)
            info = parse_infotext(comment) if comment and "Steps:" in comment else GenerationInfo()
        else:
            return GenerationInfo()
    except (struct.error, ValueError, IndexError, RecursionError):
        return GenerationInfo()
    if size is not None:
        info.width, info.height = size
    return info


def _from_png_texts(texts: dict[str, str]) -> GenerationInfo:
    if "parameters" in texts:
        return parse_infotext(texts["parameters"])
    if "prompt" in texts:
        return parse_comfy_graph(texts["prompt"], texts.get("workflow")) or GenerationInfo()
    return GenerationInfo()
