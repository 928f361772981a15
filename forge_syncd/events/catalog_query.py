"""The catalog's search (`forge-syncctl find`), as both catalog sinks answer it.

`CatalogQuery` is what the `find` control method accepts; a sink that keeps a catalog
(`catalog` in SQLite, `postgres`) implements `Searchable.find`, returning `FOUND_KEYS` rows
newest first. The round-2 columns both sinks keep are `ROUND_2_COLUMNS` (the round-1 ones
are in `sinks/catalog.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# (name, SQLite type, PostgreSQL type). JSON columns hold JSON text.
ROUND_2_COLUMNS = (
    ("loras", "TEXT", "JSONB"),  # [{"name": ..., "weight": ...}, ...]
    ("vae", "TEXT", "TEXT"),
    ("scheduler", "TEXT", "TEXT"),
    ("denoise", "REAL", "DOUBLE PRECISION"),
    ("samplers", "TEXT", "JSONB"),  # every sampler of a ComfyUI graph, with its prompts
    ("duration_s", "REAL", "DOUBLE PRECISION"),
    ("frame_rate", "REAL", "DOUBLE PRECISION"),
)

# What `find` returns for each file (JSON-able values; `loras` decoded).
FOUND_KEYS = (
    "container",
    "path",
    "local_path",
    "size",
    "mtime",
    "generator",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "sampler",
    "cfg_scale",
    "model",
    "loras",
    "width",
    "height",
    "duration_s",
    "versioned_at",
    "purged_at",
)
MAX_LIMIT = 1000


@dataclass(frozen=True)
class CatalogQuery:
    """A search. Every given field must match: `prompt` words (all of them, in the prompt
    or negative prompt, full-text), `model` (substring, case-insensitive), `seed` (exact),
    `lora` (a LoRA name, substring, case-insensitive), `container` (exact), `since_s`
    (files whose mtime is at most that many seconds old). Newest first, at most `limit`."""

    prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    lora: str | None = None
    container: str | None = None
    since_s: float | None = None
    limit: int = 50


class SearchTimedOut(Exception):
    """A search the catalog did not answer in time (a slow or locked database); the message
    names the database. The control socket answers it with the error code `timeout`."""


class Searchable(Protocol):
    """A sink that can answer `find`."""

    def find(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """Return the matching rows (FOUND_KEYS), newest first. Raise SearchTimedOut if the
        catalog does not answer in time."""
