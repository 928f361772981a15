"""What every reader shares: the result (`GenerationInfo`), what a container found (`Found`),
values taken from untrusted JSON or text, and JSON parsed within the budget."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from forge_syncd.events.budget import MetadataProblem, Meter

MAX_NUMBER_CHARS = 64  # longer "numbers" are not seeds or steps (and int() on them is slow)
MAX_LORAS = 64  # LoRAs kept per file (real: a handful)


@dataclass
class GenerationInfo:
    """What a media file says about how it was made: one catalog row's metadata columns."""

    generator: str | None = None  # a1111 | comfyui | invokeai | fooocus | swarmui | novelai
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    sampler: str | None = None
    cfg_scale: float | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None
    loras: list[dict[str, Any]] | None = None  # [{"name": str, "weight": float | None}]
    vae: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    samplers: list[dict[str, Any]] | None = None  # every sampler of a ComfyUI graph
    duration_s: float | None = None
    frame_rate: float | None = None
    metadata_json: str | None = None
    metadata_error: str | None = None  # "<MetadataProblem>: <detail>[; ...]"; None if all read

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a dict (the catalog's columns; lists stay lists)."""
        return asdict(self)


@dataclass
class Found:
    """What the container readers found so far (kept when parsing stops half-way)."""

    texts: dict[str, str] = field(default_factory=dict)
    size: tuple[int, int] | None = None
    duration_s: float | None = None
    frame_rate: float | None = None
    png_pixels: tuple[int, int, int, int] | None = None  # bit depth, colour type, interlace, IDAT


def to_int(value: Any) -> int | None:
    """Given a JSON or text value, return it as an int, or None if it is not one."""
    if value is None or isinstance(value, bool) or too_long(value):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def to_float(value: Any) -> float | None:
    """Given a JSON or text value, return it as a float, or None if it is not one."""
    if value is None or isinstance(value, bool) or too_long(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def to_str(value: Any) -> str | None:
    """Given a JSON value, return it if it is a non-blank string (stripped), else None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


# How each settings field is read from untrusted JSON or text (`settings`).
_CONVERT = {
    "seed": to_int,
    "steps": to_int,
    "cfg_scale": to_float,
    "denoise": to_float,
}


def settings(source: dict[str, Any], **keys: str) -> dict[str, Any]:
    """Given a mapping a front end wrote and {GenerationInfo field: its key there}, return
    the fields, each converted (numbers checked, anything else as text or None)."""
    return {name: _CONVERT.get(name, to_str)(source.get(key)) for name, key in keys.items()}


def too_long(value: Any) -> bool:
    """Return whether `value` is a string too long to be a number."""
    return isinstance(value, str) and len(value) > MAX_NUMBER_CHARS


def lora(name: Any, weight: Any) -> dict[str, Any] | None:
    """Given a LoRA's name and weight as found, return {"name", "weight"} or None."""
    text = to_str(name)
    if text is None:
        return None
    return {"name": text, "weight": to_float(weight)}


def unique_loras(found: list[dict[str, Any] | None]) -> list[dict[str, Any]] | None:
    """Return the LoRAs without repeats (by name, the first weight known wins), at most
    MAX_LORAS of them, or None if there are none."""
    kept: dict[str, dict[str, Any]] = {}
    for item in found:
        if item is None:
            continue
        known = kept.get(item["name"])
        if known is None and len(kept) < MAX_LORAS:
            kept[item["name"]] = item
        elif known is not None and known["weight"] is None:
            known["weight"] = item["weight"]
    return list(kept.values()) or None


def load_json(text: str, what: str, meter: Meter, quiet: bool = False) -> Any:
    """Given untrusted JSON text and what it is (for the notes), return the parsed value, or
    None and a note on the meter (no note if `quiet`: text that may or may not be JSON).

    One json.loads call holds the GIL for its whole input, and its time grows faster than
    linearly with the lists and objects it builds (the garbage collector runs among them): 1 MiB
    of `[],` took 35 ms here. So the text is at most `max_text` long and may open at most
    `max_json_containers` lists and objects (100,000: under 8 ms); too deep nesting and too
    long numbers are refused.
    """
    budget = meter.budget
    note = _no_note if quiet else meter.note
    if len(text) > budget.max_text:
        note(MetadataProblem.TOO_LARGE, f"{what} of {len(text)} characters")
        return None
    containers = text.count("[") + text.count("{")  # also inside strings: fine
    if containers > budget.max_json_containers:
        note(
            MetadataProblem.TOO_LARGE,
            f"{what} opens {containers} lists and objects (limit {budget.max_json_containers})",
        )
        return None
    try:
        return json.loads(text, parse_int=json_int)
    except RecursionError:
        note(MetadataProblem.MALFORMED, f"{what} JSON nested too deeply")
    except ValueError as exc:
        note(MetadataProblem.MALFORMED, f"{what} is not JSON: {exc}")
    return None


def _no_note(kind: MetadataProblem, detail: str) -> None:
    """Meter.note's stand-in when a failure is an answer, not a problem."""


def json_int(text: str) -> int:
    """Given an integer literal from JSON, return it; raise ValueError if it is too long to be
    a seed (int() of a huge literal is one long C call where the digit limit is lifted)."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} digits")
    return int(text)


def json_object(text: str, what: str, meter: Meter) -> dict[str, Any] | None:
    """Given text that may be a JSON object (an infotext may start with "{" too), return the
    object, or None without a note if it is not one."""
    if text.lstrip()[:1] != "{" or text.rstrip()[-1:] != "}":
        return None
    value = load_json(text, what, meter, quiet=True)
    return value if isinstance(value, dict) else None


def dig(value: Any, *keys: str) -> Any:
    """Return value[k1][k2]... following dicts, or None where a key or a dict is missing."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
