"""NovelAI: PNG `Software` = NovelAI, `Description` (the prompt), `Comment` (JSON: steps,
sampler, seed, scale, uc = the negative prompt), `Source` (the model)."""

from __future__ import annotations

import json

from forge_syncd.events.budget import Meter
from forge_syncd.events.formats.common import (
    GenerationInfo,
    dig,
    json_object,
    settings,
    to_str,
)

KEYS = ("Software", "Source", "Title", "Description", "Comment")


def is_novelai(texts: dict[str, str]) -> bool:
    """Return whether the texts were written by NovelAI."""
    return texts.get("Software", "").startswith("NovelAI") and "Comment" in texts


def parse_novelai(texts: dict[str, str], meter: Meter) -> GenerationInfo:
    """Given NovelAI's texts, return what they say."""
    comment = json_object(texts.get("Comment", ""), "NovelAI Comment", meter) or {}
    prompt = to_str(texts.get("Description")) or to_str(comment.get("prompt"))
    prompt = prompt or to_str(dig(comment, "v4_prompt", "caption", "base_caption"))
    return GenerationInfo(
        generator="novelai",
        prompt=prompt,
        **settings(
            comment,
            negative_prompt="uc",
            seed="seed",
            steps="steps",
            cfg_scale="scale",
            sampler="sampler",
            scheduler="noise_schedule",
        ),
        model=to_str(texts.get("Source")),
        metadata_json=json.dumps({k: texts[k] for k in KEYS if k in texts}),
    )
