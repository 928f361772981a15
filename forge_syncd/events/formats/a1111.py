"""A1111/Forge infotext beyond the basic settings: LoRAs (`<lora:name:weight>` in the prompt
and the `Lora hashes` setting), VAE, schedule type and denoising strength."""

from __future__ import annotations

from typing import Any

from forge_syncd.events.budget import Meter
from forge_syncd.events.formats.common import MAX_LORAS, lora, to_float, unique_loras

LORA_OPENERS = ("<lora:", "<lyco:")
MAX_TAG = 512  # characters from "<lora:" to its ">"


def infotext_extras(prompt: str, settings: dict[str, str], meter: Meter) -> dict[str, Any]:
    """Given the prompt and settings of an infotext, return the columns beyond the basic ones:
    loras, vae, scheduler, denoise."""
    found = prompt_loras(prompt, meter)
    for entry in settings.get("Lora hashes", "").split(",")[:MAX_LORAS]:
        name = entry.rpartition(":")[0] if ":" in entry else ""
        found.append(lora(name, None))
    return {
        "loras": unique_loras(found),
        "vae": settings.get("VAE"),
        "scheduler": settings.get("Schedule type"),
        "denoise": to_float(settings.get("Denoising strength")),
    }


def prompt_loras(prompt: str, meter: Meter) -> list[dict[str, Any] | None]:
    """Given a prompt, return its `<lora:name:weight>` and `<lyco:...>` tags as LoRAs (at most
    MAX_LORAS). Each tag is found with str.find, its end looked for within MAX_TAG characters:
    time linear in the prompt."""
    found: list[dict[str, Any] | None] = []
    lower = prompt.lower()
    for opener in LORA_OPENERS:
        start = lower.find(opener)
        while start >= 0 and len(found) < MAX_LORAS:
            meter.tick("infotext LoRAs")
            body = start + len(opener)
            end = prompt.find(">", body, body + MAX_TAG)
            if end >= 0:
                name, _sep, rest = prompt[body:end].partition(":")
                found.append(lora(name, rest.partition(":")[0] or None))
            start = lower.find(opener, body)
    return found
