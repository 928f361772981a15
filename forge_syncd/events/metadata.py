"""Generation metadata read from the media file itself, for the catalog.

A1111/Forge write their "infotext" into a PNG text chunk `parameters` (JPEG: the EXIF
UserComment); ComfyUI writes its API graph into a PNG chunk `prompt`. Files are untrusted:
every parser runs in time linear in its input, and each file has a `MetadataBudget` (sizes
read and parsed, CPU time; see budget.py). Reading never raises: what could not be read, and
why, is `GenerationInfo.metadata_error`.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from forge_syncd.events.budget import (
    DEFAULT_BUDGET,
    BudgetExceeded,
    MetadataBudget,
    MetadataProblem,
    Meter,
)
from forge_syncd.events.infotext import split_infotext

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")
MAX_GRAPH_DEPTH = 64
MAX_NUMBER_CHARS = 64  # longer "numbers" are not seeds or steps (and int() on them is slow)


@dataclass
class GenerationInfo:
    """What a media file says about how it was made: one catalog row's metadata columns."""

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
    metadata_error: str | None = None  # "<MetadataProblem>: <detail>[; ...]"; None if all read

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (the catalog's columns)."""
        return asdict(self)


@dataclass
class _Found:
    """What the container readers found so far (kept when parsing stops half-way)."""

    texts: dict[str, str] = field(default_factory=dict)
    size: tuple[int, int] | None = None


# -- entry point ------------------------------------------------------------------------------
def read_generation_info(path: bytes, budget: MetadataBudget = DEFAULT_BUDGET) -> GenerationInfo:
    """Given a local media file and what reading it may cost, return its generation metadata.

    Never raises. A file without metadata gives an empty result. One that cannot be read, is
    malformed, holds more than the size caps or takes more than the CPU budget gives what could
    be read (the image size at least, when its header was read) and `metadata_error` saying
    why: "<kind>: <detail>", the kind a MetadataProblem, several joined with "; ".
    """
    meter = Meter(budget)
    found = _Found()
    info = GenerationInfo()
    try:
        info = _read(path, meter, found)
    except BudgetExceeded as exc:
        meter.note(MetadataProblem.OVER_TIME, f"over {budget.cpu_seconds:g} s of CPU in {exc}")
    except OSError as exc:
        meter.note(MetadataProblem.UNREADABLE, f"{exc.strerror or exc}")
    except RecursionError:
        meter.note(MetadataProblem.MALFORMED, "nested too deeply")
    except (struct.error, ValueError, IndexError) as exc:
        meter.note(MetadataProblem.MALFORMED, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # hostile input must never take the caller down
        meter.note(MetadataProblem.INTERNAL, f"{type(exc).__name__}: {exc}")
    if found.size is not None:
        info.width, info.height = found.size
    info.metadata_error = meter.error
    return info


def _read(path: bytes, meter: Meter, found: _Found) -> GenerationInfo:
    lower = path.lower()
    if lower.endswith(b".png"):
        _read_png(path, meter, found)
        return _from_png_texts(found.texts, meter)
    if lower.endswith((b".jpg", b".jpeg")):
        comment = _read_jpeg(path, meter, found)
        if comment and "Steps:" in comment:
            return parse_infotext(comment, meter)
    return GenerationInfo()


def _from_png_texts(texts: dict[str, str], meter: Meter) -> GenerationInfo:
    if "parameters" in texts:
        return parse_infotext(texts["parameters"], meter)
    if "prompt" in texts:
        return parse_comfy_graph(texts["prompt"], texts.get("workflow"), meter) or GenerationInfo()
    return GenerationInfo()


# -- containers -------------------------------------------------------------------------
def _read_png(path: bytes, meter: Meter, found: _Found) -> None:
    """Given a PNG, put its text chunks (tEXt, zTXt, iTXt) and (width, height) into `found`.

    A text chunk over the size caps is seeked over; the walk stops at IEND, after `max_scan`
    bytes or `max_chunks` chunks. Problems are noted on the meter; raise OSError if the file
    cannot be read, BudgetExceeded if the CPU budget runs out.
    """
    budget = meter.budget
    with open(path, "rb") as handle:
        if handle.read(8) != PNG_SIGNATURE:
            meter.note(MetadataProblem.MALFORMED, "not a PNG file")
            return
        scanned, chunks = 8, 0
        while True:
            if scanned >= budget.max_scan or chunks >= budget.max_chunks:
                if not found.texts:
                    meter.note(
                        MetadataProblem.TOO_LARGE,
                        f"no metadata in the first {chunks} PNG chunks ({scanned} bytes)",
                    )
                return
            meter.tick("PNG chunks")
            header = handle.read(8)
            if len(header) < 8:
                if header:
                    meter.note(MetadataProblem.MALFORMED, "PNG cut short in a chunk header")
                return
            length, kind = struct.unpack(">I4s", header)
            scanned, chunks = scanned + 12 + length, chunks + 1
            if kind == b"IEND":
                return
            if kind == b"IHDR" and length >= 8:
                body = handle.read(8)
                if len(body) < 8:
                    meter.note(MetadataProblem.MALFORMED, "PNG cut short in its header")
                    return
                found.size = struct.unpack(">II", body)
                handle.seek(length - 8 + 4, 1)
            elif kind in PNG_TEXT_KINDS:
                if not _text_fits(handle, kind, length, meter):
                    continue
                body = handle.read(length)
                handle.seek(4, 1)  # CRC
                if len(body) < length:
                    meter.note(MetadataProblem.MALFORMED, "PNG cut short in a text chunk")
                    return
                _add_text(kind, body, found.texts, meter)
            else:
                handle.seek(length + 4, 1)


def _text_fits(handle: Any, kind: bytes, length: int, meter: Meter) -> bool:
    """Given an open PNG at the start of a text chunk's body, return whether the chunk fits
    the size caps (and take its length from the file's text allowance). If it does not,
    note it and leave the handle past the chunk."""
    if length <= meter.budget.max_text and length <= meter.text_left:
        meter.text_left -= length
        return True
    keyword = handle.read(min(length, 80)).partition(b"\0")[0].decode("latin-1")
    handle.seek(length - min(length, 80) + 4, 1)
    if length > meter.budget.max_text:
        limit = f"the {meter.budget.max_text} bytes allowed per chunk"
    else:
        limit = f"the {meter.budget.max_total_text} bytes of text allowed per file"
    meter.note(
        MetadataProblem.TOO_LARGE,
        f"PNG {kind.decode()} chunk {keyword!r} of {length} bytes skipped: over {limit}",
    )
    return False


def _add_text(kind: bytes, body: bytes, texts: dict[str, str], meter: Meter) -> None:
    """Given a text chunk's kind and body, decode it into `texts` (or note why not)."""
    key, sep, rest = body.partition(b"\0")
    name = key.decode("latin-1")
    if not sep:
        meter.note(MetadataProblem.MALFORMED, f"PNG {kind.decode()} chunk without a keyword")
        return
    try:
        if kind == b"tEXt":
            value = rest.decode("latin-1")
        elif kind == b"zTXt":
            value = _inflate(rest[1:], meter).decode("latin-1")
        else:  # iTXt: compressed flag, method, language\0, translated keyword\0, text
            compressed = rest[:1] == b"\x01"
            text = rest[2:].split(b"\0", 2)[-1]
            value = (_inflate(text, meter) if compressed else text).decode("utf-8")
    except TextTooLarge as exc:
        meter.note(MetadataProblem.TOO_LARGE, f"PNG {kind.decode()} chunk {name!r}: {exc}")
        return
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        meter.note(MetadataProblem.MALFORMED, f"PNG {kind.decode()} chunk {name!r}: {exc}")
        return
    texts[name] = value


class TextTooLarge(ValueError):
    """A compressed text chunk inflates past what the budget allows."""


def _inflate(data: bytes, meter: Meter) -> bytes:
    """Given zlib data, return it inflated (one bounded C call).

    Raise TextTooLarge past the text caps, zlib.error if it is not zlib data.
    """
    limit = min(meter.budget.max_text, meter.text_left)
    decompressor = zlib.decompressobj()
    out = decompressor.decompress(data, limit)
    if decompressor.unconsumed_tail:
        raise TextTooLarge(f"inflates past the {limit} bytes of text allowed")
    meter.text_left -= len(out)
    return out


def _read_jpeg(path: bytes, meter: Meter, found: _Found) -> str | None:
    """Given a JPEG, return its EXIF UserComment text and put its (width, height) in `found`.

    Raise OSError if the file cannot be read.
    """
    comment = None
    with open(path, "rb") as handle:
        if handle.read(2) != b"\xff\xd8":
            meter.note(MetadataProblem.MALFORMED, "not a JPEG file")
            return None
        for _ in range(256):  # segments are at most 64 KiB each
            marker = handle.read(4)
            if len(marker) < 4 or marker[0] != 0xFF:
                break
            kind, length = marker[1], struct.unpack(">H", marker[2:])[0]
            if kind == 0xDA or length < 2:  # start of scan: no more metadata
                break
            body = handle.read(length - 2)
            if kind == 0xE1 and body.startswith(b"Exif\0\0"):
                comment = _exif_user_comment(body[6:])
            elif kind in (0xC0, 0xC1, 0xC2) and len(body) >= 5:
                height, width = struct.unpack(">HH", body[1:5])
                found.size = (width, height)
    return comment


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
def parse_infotext(text: str, meter: Meter | None = None) -> GenerationInfo:
    """Given A1111/Forge "parameters" text, return what it says (time linear in its length).

    Raise BudgetExceeded if the meter's CPU budget runs out.
    """
    meter = meter or Meter(DEFAULT_BUDGET)
    meter.check("infotext")
    prompt, negative, settings = split_infotext(text, meter)
    return GenerationInfo(
        generator="a1111",
        prompt=prompt.strip() or None,
        negative_prompt=negative.strip() or None,
        seed=_int(settings.get("Seed")),
        steps=_int(settings.get("Steps")),
        sampler=settings.get("Sampler"),
        cfg_scale=_float(settings.get("CFG scale")),
        model=settings.get("Model"),
        metadata_json=json.dumps({"parameters": text}),
    )


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool) or _too_long(value):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or _too_long(value):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _too_long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > MAX_NUMBER_CHARS


# -- ComfyUI API graph ------------------------------------------------------------------------
def parse_comfy_graph(
    prompt_json: str, workflow_json: str | None, meter: Meter | None = None
) -> GenerationInfo | None:
    """Given ComfyUI's `prompt` chunk (the API graph), return the first sampler's settings,
    its positive and negative text (followed through the links) and its checkpoint; None
    (and a note on the meter) if it is not a graph.

    Time is linear in the graph's size. Raise BudgetExceeded if the CPU budget runs out.
    """
    meter = meter or Meter(DEFAULT_BUDGET)
    meter.check("ComfyUI prompt")
    graph = _load_graph(prompt_json, meter)
    if graph is None:
        return None
    sampler = _base_sampler(graph, meter)
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
    info.prompt = _texts(graph, inputs.get("positive"), meter)
    info.negative_prompt = _texts(graph, inputs.get("negative"), meter)
    info.model = _checkpoint(graph, inputs.get("model"))
    return info


def _load_graph(prompt_json: str, meter: Meter) -> dict[str, dict[str, Any]] | None:
    """Given the `prompt` text, return the graph {node id: node}, or None and a note.

    One json.loads call holds the GIL for its whole input, and its time grows faster than
    linearly with the lists and objects it builds (the garbage collector runs among them): 1 MiB
    of `[],` took 35 ms here. So the text is at most `max_text` long and may open at most
    `max_json_containers` lists and objects (100,000: under 8 ms); too deep nesting and too
    long numbers are refused.
    """
    budget = meter.budget
    if len(prompt_json) > budget.max_text:
        meter.note(MetadataProblem.TOO_LARGE, f"ComfyUI prompt of {len(prompt_json)} characters")
        return None
    containers = prompt_json.count("[") + prompt_json.count("{")  # also inside strings: fine
    if containers > budget.max_json_containers:
        meter.note(
            MetadataProblem.TOO_LARGE,
            f"ComfyUI prompt opens {containers} lists and objects "
            f"(limit {budget.max_json_containers})",
        )
        return None
    try:
        graph = json.loads(prompt_json, parse_int=_json_int)
    except RecursionError:
        meter.note(MetadataProblem.MALFORMED, "ComfyUI prompt JSON nested too deeply")
        return None
    except ValueError as exc:
        meter.note(MetadataProblem.MALFORMED, f"ComfyUI prompt is not JSON: {exc}")
        return None
    if not isinstance(graph, dict) or not all(isinstance(n, dict) for n in graph.values()):
        meter.note(MetadataProblem.MALFORMED, "ComfyUI prompt is not a graph of nodes")
        return None
    return graph


def _json_int(text: str) -> int:
    """Given an integer literal from JSON, return it; raise ValueError if it is too long to be
    a seed (int() of a huge literal is one long C call where the digit limit is lifted)."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def _link_id(graph: dict[str, Any], link: Any) -> str | None:
    """Given an input value, return the id of the node it links to, if it is a link."""
    if isinstance(link, list) and link and isinstance(link[0], str | int):
        key = str(link[0])
        if key in graph:
            return key
    return None


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    key = _link_id(graph, link)
    return None if key is None else graph[key]


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _is_sampler(node: dict[str, Any]) -> bool:
    kind = node.get("class_type")
    return isinstance(kind, str) and ("KSampler" in kind or kind.startswith("SamplerCustom"))


def _base_sampler(graph: dict[str, Any], meter: Meter) -> dict[str, Any] | None:
    """The sampler that starts the chain: its latent does not come from another sampler
    (within MAX_GRAPH_DEPTH links); the first sampler by id if every one does."""
    samplers: list[tuple[str, dict[str, Any]]] = sorted(
        ((str(key), node) for key, node in graph.items() if _is_sampler(node)),
        key=lambda item: (len(item[0]), item[0]),
    )
    if not samplers:
        return None
    fed = _fed_by_sampler(graph, [key for key, _node in samplers], meter)
    for _key, node in samplers:
        if _link_id(graph, _inputs(node).get("latent_image")) not in fed:
            return node
    return samplers[0][1]


def _fed_by_sampler(graph: dict[str, Any], samplers: list[str], meter: Meter) -> set[str]:
    """Given the graph and its samplers' ids, return the ids of the nodes that are a sampler
    or take input from one through at most MAX_GRAPH_DEPTH links.

    One breadth-first walk from all samplers at once along the links reversed: each node and
    link is visited once, however many samplers share a chain (one walk per sampler was
    quadratic: 4000 samplers on one 4000-input node took 10 s).
    """
    users: dict[str, list[str]] = {}
    for key, node in graph.items():
        for value in _inputs(node).values():
            source = _link_id(graph, value)
            if source is not None:
                users.setdefault(source, []).append(str(key))
            meter.tick("ComfyUI links")
    fed = set(samplers)
    frontier = deque((key, 0) for key in samplers)
    while frontier:
        key, depth = frontier.popleft()
        meter.tick("ComfyUI sampler chain")
        if depth == MAX_GRAPH_DEPTH:
            continue
        for user in users.get(key, ()):
            if user not in fed:
                fed.add(user)
                frontier.append((user, depth + 1))
    return fed


def _texts(graph: dict[str, Any], link: Any, meter: Meter) -> str | None:
    """Collect the text of every CLIP text node feeding a conditioning input, in order."""
    found: list[str] = []
    _collect_texts(graph, link, 0, set(), found, meter)
    return "\n".join(t.strip() for t in found if t.strip()) or None


def _collect_texts(
    graph: dict[str, Any], link: Any, depth: int, seen: set[str], found: list[str], meter: Meter
) -> None:
    node = _node(graph, link)
    if node is None or depth > MAX_GRAPH_DEPTH or str(link[0]) in seen:
        return
    seen.add(str(link[0]))
    meter.tick("ComfyUI prompt links")
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
            _collect_texts(graph, value, depth + 1, seen, found, meter)


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
