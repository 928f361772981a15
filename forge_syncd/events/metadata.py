"""Generation metadata read from the media file itself, for the catalog.

Which readers run is decided by the file's extension: the container (PNG, JPEG, WebP,
MP4/MOV, Matroska/WebM) gives its texts, image size and, for video and animations, duration
and frame rate; the texts name the front end (A1111/Forge, ComfyUI, InvokeAI, Fooocus,
SwarmUI, NovelAI) that wrote them. A PNG without text may carry A1111's "stealth" infotext in
its alpha channel; a file without embedded metadata may have a `.txt` or `.json` sidecar.
Files are untrusted: every parser runs in time linear in its input, and each file has a
`MetadataBudget` (sizes read and parsed, CPU time; see budget.py). Reading never raises: what
could not be read, and why, is `GenerationInfo.metadata_error`.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

from forge_syncd.events.budget import (
    DEFAULT_BUDGET,
    BudgetExceeded,
    MetadataBudget,
    MetadataProblem,
    Meter,
)
from forge_syncd.events.formats import comfy
from forge_syncd.events.formats.a1111 import infotext_extras
from forge_syncd.events.formats.common import (
    MAX_NUMBER_CHARS,
    Found,
    GenerationInfo,
    json_object,
    to_float,
    to_int,
)
from forge_syncd.events.formats.fooocus import is_fooocus, parse_fooocus
from forge_syncd.events.formats.invokeai import parse_invokeai
from forge_syncd.events.formats.jpeg import read_jpeg
from forge_syncd.events.formats.matroska import read_matroska
from forge_syncd.events.formats.mp4 import read_mp4
from forge_syncd.events.formats.novelai import is_novelai, parse_novelai
from forge_syncd.events.formats.png import read_png
from forge_syncd.events.formats.sidecar import read_sidecars
from forge_syncd.events.formats.stealth import read_stealth
from forge_syncd.events.formats.swarmui import is_swarmui, parse_swarmui
from forge_syncd.events.formats.webp import read_webp
from forge_syncd.events.infotext import split_infotext

__all__ = [
    "MAX_GRAPH_DEPTH",
    "MAX_NUMBER_CHARS",
    "GenerationInfo",
    "parse_comfy_graph",
    "parse_infotext",
    "read_generation_info",
]

MAX_GRAPH_DEPTH = comfy.MAX_GRAPH_DEPTH
Reader = Callable[[bytes, Meter, Found], None]
READERS: dict[bytes, Reader] = {
    b".png": read_png,
    b".apng": read_png,
    b".jpg": read_jpeg,
    b".jpeg": read_jpeg,
    b".jfif": read_jpeg,
    b".webp": read_webp,
    b".mp4": read_mp4,
    b".m4v": read_mp4,
    b".mov": read_mp4,
    b".webm": read_matroska,
    b".mkv": read_matroska,
}


# -- entry point ------------------------------------------------------------------------------
def read_generation_info(path: bytes, budget: MetadataBudget = DEFAULT_BUDGET) -> GenerationInfo:
    """Given a local media file and what reading it may cost, return its generation metadata.

    Never raises. A file without metadata gives an empty result. One that cannot be read, is
    malformed, holds more than the size caps or takes more than the CPU budget gives what could
    be read (the image size, duration and frame rate at least, when its headers were read) and
    `metadata_error` saying why: "<kind>: <detail>", the kind a MetadataProblem, several
    joined with "; ".
    """
    meter = Meter(budget)
    found = Found()
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
    info.duration_s, info.frame_rate = found.duration_s, found.frame_rate
    info.metadata_error = meter.error
    return info


def _read(path: bytes, meter: Meter, found: Found) -> GenerationInfo:
    """Read the container the extension names, then its texts, stealth info or sidecars."""
    extension = os.path.splitext(path)[1].lower()
    reader = READERS.get(extension)
    if reader is None:
        return GenerationInfo()
    reader(path, meter, found)
    info = from_texts(found.texts, meter)
    if info is None and reader is read_png and not found.texts:
        stealth = read_stealth(path, found, meter)
        info = None if stealth is None else _from_stealth(stealth, meter)
    if info is None:
        info = _from_sidecars(read_sidecars(path, meter), meter)
    return info or GenerationInfo()


# -- which front end ----------------------------------------------------------------------------
def from_texts(texts: dict[str, str], meter: Meter) -> GenerationInfo | None:
    """Given the texts a container holds (PNG chunks, EXIF texts, video tags), return what the
    front end that wrote them says, or None if no front end is recognised."""
    if "prompt" in texts and ("workflow" in texts or "parameters" not in texts):
        # ComfyUI (some of its savers add A1111-style `parameters`: the graph says more)
        info = parse_comfy_graph(texts["prompt"], texts.get("workflow"), meter)
        if info is not None or "parameters" not in texts:
            return info
    if "parameters" in texts:
        return _from_parameters(texts["parameters"], texts, meter)
    if any(key in texts for key in ("invokeai_metadata", "sd-metadata", "Dream")):
        return parse_invokeai(texts, meter)
    if is_novelai(texts):
        return parse_novelai(texts, meter)
    if "user_comment" in texts:  # JPEG / WebP EXIF
        return _from_parameters(texts["user_comment"], {}, meter, quiet=True)
    if "comment" in texts:  # video tags as VideoHelperSuite writes them
        return _from_video_comment(texts["comment"], meter)
    return None


def _from_parameters(
    text: str, texts: dict[str, str], meter: Meter, quiet: bool = False
) -> GenerationInfo | None:
    """A1111/Forge infotext, or the JSON that Fooocus and SwarmUI keep under that name (and
    that some ComfyUI savers put in the EXIF UserComment). `quiet`: text that is neither is
    not metadata (a JPEG's own comment)."""
    data = json_object(text, "parameters", meter)
    if data is not None and is_swarmui(data):
        return parse_swarmui(data, {"parameters": text})
    if data is not None and is_fooocus(data, texts):
        return parse_fooocus(data, texts)
    if data is not None and isinstance(data.get("prompt"), dict | str):
        return _from_video_comment(text, meter)
    if quiet and "Steps:" not in text:
        return None
    info = parse_infotext(text, meter)
    if texts.get("fooocus_scheme") == "a1111" or "Version: Fooocus" in text:
        info.generator = "fooocus"
    return info


def _from_video_comment(text: str, meter: Meter) -> GenerationInfo | None:
    """VideoHelperSuite's `comment`: JSON {"prompt": "<the API graph as JSON text>",
    "workflow": {...}} (either may also be an object)."""
    data = json_object(text, "video comment", meter)
    if data is None or "prompt" not in data:
        return None
    prompt, workflow = data["prompt"], data.get("workflow")
    prompt_text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    workflow_text = workflow if isinstance(workflow, str | None) else json.dumps(workflow)
    return parse_comfy_graph(prompt_text, workflow_text, meter)


def _from_stealth(text: str, meter: Meter) -> GenerationInfo | None:
    """Stealth info is A1111 infotext, or NovelAI's texts as a JSON object."""
    data = json_object(text, "stealth PNG info", meter)
    if data is not None:
        texts = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        texts.setdefault("Software", "NovelAI")
        return from_texts(texts, meter)
    return parse_infotext(text, meter)


def _from_sidecars(sidecars: dict[str, str], meter: Meter) -> GenerationInfo | None:
    """A `.txt` sidecar is A1111 infotext; a `.json` one SwarmUI metadata."""
    if "json" in sidecars:
        data = json_object(sidecars["json"], "JSON sidecar", meter)
        if data is not None and is_swarmui(data):
            return parse_swarmui(data, {"json_sidecar": sidecars["json"]})
    if "txt" in sidecars and "Steps:" in sidecars["txt"]:
        info = parse_infotext(sidecars["txt"], meter)
        info.metadata_json = json.dumps({"txt_sidecar": sidecars["txt"]})
        return info
    return None


# -- A1111 / Forge infotext ---------------------------------------------------------------
def parse_infotext(text: str, meter: Meter | None = None) -> GenerationInfo:
    """Given A1111/Forge "parameters" text, return what it says (time linear in its length).

    Raise BudgetExceeded if the meter's CPU budget runs out.
    """
    meter = meter or Meter(DEFAULT_BUDGET)
    meter.check("infotext")
    prompt, negative, settings = split_infotext(text, meter)
    extras: dict[str, Any] = infotext_extras(prompt, settings, meter)
    return GenerationInfo(
        generator="a1111",
        prompt=prompt.strip() or None,
        negative_prompt=negative.strip() or None,
        seed=to_int(settings.get("Seed")),
        steps=to_int(settings.get("Steps")),
        sampler=settings.get("Sampler"),
        cfg_scale=to_float(settings.get("CFG scale")),
        model=settings.get("Model"),
        metadata_json=json.dumps({"parameters": text}),
        **extras,
    )


# -- ComfyUI API graph ------------------------------------------------------------------------
def parse_comfy_graph(
    prompt_json: str, workflow_json: str | None, meter: Meter | None = None
) -> GenerationInfo | None:
    """Given ComfyUI's `prompt` text (the API graph) and `workflow`, return every sampler in
    `samplers`, the final sampler's settings in the flat columns, and both texts in
    `metadata_json`; None (and a note on the meter) if it is not a graph.

    Time is linear in the graph's size. Raise BudgetExceeded if the CPU budget runs out.
    """
    meter = meter or Meter(DEFAULT_BUDGET)
    info = comfy.parse_graph(prompt_json, workflow_json, meter)
    if info is not None:
        raw = {"prompt": prompt_json, **({"workflow": workflow_json} if workflow_json else {})}
        info.metadata_json = json.dumps(raw)
    return info
