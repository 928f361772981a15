"""InvokeAI: `invokeai_metadata` (3.x and later, JSON), `sd-metadata` (2.x, JSON) and
`Dream` (older, a command line: "prompt [negative]" -s steps -S seed -C cfg -A sampler ...).
In 2.x prompts the negative prompt is the text in square brackets."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from forge_syncd.events.budget import Meter
from forge_syncd.events.formats.common import (
    GenerationInfo,
    dig,
    json_object,
    lora,
    settings,
    to_float,
    to_int,
    to_str,
    unique_loras,
)

BRACKETED = re.compile(r"\[([^\[\]]*)\]")  # no nesting: linear, each run scanned once
DREAM_FLAGS = {"-s": "steps", "-S": "seed", "-C": "cfg", "-A": "sampler", "-f": "strength"}


def parse_invokeai(texts: dict[str, str], meter: Meter) -> GenerationInfo | None:
    """Given a PNG's texts, return InvokeAI's metadata (the newest form present), or None."""
    raw = {k: texts[k] for k in ("invokeai_metadata", "sd-metadata", "Dream") if k in texts}
    info = None
    if "invokeai_metadata" in raw:
        info = _invokeai_metadata(json_object(raw["invokeai_metadata"], "InvokeAI", meter))
    if info is None and "sd-metadata" in raw:
        info = _sd_metadata(json_object(raw["sd-metadata"], "InvokeAI", meter))
    if info is None and "Dream" in raw:
        info = _dream(raw["Dream"])
    if info is not None:
        info.generator, info.metadata_json = "invokeai", json.dumps(raw)
    return info


def _name(value: Any) -> str | None:
    """A model as InvokeAI writes it: a name, or {"model_name"} (3.x), or {"name"} (4.x+)."""
    return to_str(value) or to_str(dig(value, "model_name")) or to_str(dig(value, "name"))


def _invokeai_metadata(data: dict[str, Any] | None) -> GenerationInfo | None:
    if data is None:
        return None
    loras = data.get("loras")
    return GenerationInfo(
        prompt=to_str(data.get("positive_prompt")),
        negative_prompt=to_str(data.get("negative_prompt")),
        seed=to_int(data.get("seed")),
        steps=to_int(data.get("steps")),
        cfg_scale=to_float(data.get("cfg_scale")),
        sampler=to_str(data.get("scheduler")),  # InvokeAI calls the sampling method scheduler
        model=_name(data.get("model")),
        vae=_name(data.get("vae")),
        denoise=to_float(data.get("strength")),
        loras=unique_loras(
            [
                lora(_name(item.get("lora") or item.get("model")), item.get("weight"))
                for item in (loras if isinstance(loras, list) else [])[:64]
                if isinstance(item, dict)
            ]
        ),
    )


def _sd_metadata(data: dict[str, Any] | None) -> GenerationInfo | None:
    if data is None or not isinstance(data.get("image"), dict):
        return None
    image = data["image"]
    prompt = image.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(dig(p, "prompt") or "") for p in prompt[:64] if isinstance(p, dict))
    positive, negative = split_negative(prompt if isinstance(prompt, str) else "")
    return GenerationInfo(
        prompt=positive,
        negative_prompt=negative,
        model=to_str(data.get("model_weights")),
        **settings(
            image,
            seed="seed",
            steps="steps",
            cfg_scale="cfg_scale",
            sampler="sampler",
            denoise="strength",
        ),
    )


def _dream(text: str) -> GenerationInfo:
    """Given a Dream command line, return what it says."""
    text = text.strip()
    prompt, rest = "", text
    if text.startswith('"'):
        close = text.find('" -', 1)
        close = close if close > 0 else text.rfind('"')
        prompt, rest = (text[1:close], text[close + 1 :]) if close > 0 else (text[1:], "")
    found: dict[str, str] = {}
    tokens = rest.split()
    for flag, value in itertools.pairwise(tokens):
        if flag in DREAM_FLAGS:
            found[DREAM_FLAGS[flag]] = value
    positive, negative = split_negative(prompt)
    return GenerationInfo(
        prompt=positive,
        negative_prompt=negative,
        seed=to_int(found.get("seed")),
        steps=to_int(found.get("steps")),
        cfg_scale=to_float(found.get("cfg")),
        sampler=found.get("sampler"),
        denoise=to_float(found.get("strength")),
    )


def split_negative(prompt: str) -> tuple[str | None, str | None]:
    """Given an InvokeAI 2.x prompt, return (prompt, negative): the text in square brackets
    is the negative prompt (several bracketed parts joined with ", ")."""
    negative = ", ".join(part.strip() for part in BRACKETED.findall(prompt) if part.strip())
    positive = BRACKETED.sub("", prompt)
    return to_str(" ".join(positive.split())), negative or None
