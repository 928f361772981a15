"""SwarmUI: a JSON object whose `sui_image_params` holds the parameters (PNG `parameters`
text, JPEG/WebP EXIF UserComment, or a `.json` sidecar)."""

from __future__ import annotations

import json
from typing import Any

from forge_syncd.events.formats.common import (
    GenerationInfo,
    lora,
    settings,
    unique_loras,
)


def is_swarmui(data: dict[str, Any]) -> bool:
    """Return whether a JSON object is SwarmUI metadata."""
    return isinstance(data.get("sui_image_params"), dict)


def parse_swarmui(data: dict[str, Any], raw: dict[str, str]) -> GenerationInfo:
    """Given SwarmUI's metadata object (and the raw texts it came from), return what it says."""
    params: dict[str, Any] = data["sui_image_params"]
    names = params.get("loras")
    weights = params.get("loraweights")
    names = names if isinstance(names, list) else []
    weights = weights if isinstance(weights, list) else []
    return GenerationInfo(
        generator="swarmui",
        **settings(
            params,
            prompt="prompt",
            negative_prompt="negativeprompt",
            seed="seed",
            steps="steps",
            cfg_scale="cfgscale",
            sampler="sampler",
            scheduler="scheduler",
            model="model",
            vae="vae",
            denoise="initimagecreativity",
        ),
        loras=unique_loras(
            [
                lora(name, weights[n] if n < len(weights) else None)
                for n, name in enumerate(names[:64])
            ]
        ),
        metadata_json=json.dumps(raw),
    )
