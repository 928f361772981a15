"""Fooocus: PNG `parameters` holding JSON (with `fooocus_scheme` = `fooocus`), or A1111-style
infotext (`fooocus_scheme` = `a1111`, parsed as infotext and named fooocus)."""

from __future__ import annotations

import json
from typing import Any

from forge_syncd.events.formats.common import (
    GenerationInfo,
    lora,
    settings,
    to_float,
    to_str,
    unique_loras,
)


def is_fooocus(data: dict[str, Any], texts: dict[str, str]) -> bool:
    """Return whether a `parameters` JSON object was written by Fooocus."""
    scheme = texts.get("fooocus_scheme") or data.get("metadata_scheme")
    return scheme == "fooocus" or ("base_model" in data and "guidance_scale" in data)


def parse_fooocus(data: dict[str, Any], texts: dict[str, str]) -> GenerationInfo:
    """Given Fooocus's `parameters` JSON object, return what it says."""
    loras = data.get("loras")
    vae = to_str(data.get("vae"))
    raw = {k: texts[k] for k in ("parameters", "fooocus_scheme") if k in texts}
    return GenerationInfo(
        generator="fooocus",
        **settings(
            data,
            prompt="prompt",
            negative_prompt="negative_prompt",
            seed="seed",
            steps="steps",
            cfg_scale="guidance_scale",
            sampler="sampler",
            scheduler="scheduler",
            model="base_model",
        ),
        vae=None if vae is None or vae.startswith("Default") else vae,
        denoise=to_float(data.get("denoising_strength")),
        loras=unique_loras(
            [
                lora(item[0], item[1])
                for item in (loras if isinstance(loras, list) else [])[:64]
                if isinstance(item, list) and len(item) >= 2
            ]
        ),
        metadata_json=json.dumps(raw),
    )
