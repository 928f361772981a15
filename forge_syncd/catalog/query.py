"""The catalog's search (`forge-syncctl find`), as both catalog sinks answer it.

`CatalogQuery` is what the `find` control method accepts; a sink that keeps a catalog
(`catalog` in SQLite, `postgres`) implements `Searchable.find`, returning
`schema.FOUND_KEYS` rows newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from forge_syncd.config.units import parse_duration
from forge_syncd.control.methods import METHODS
from forge_syncd.control.protocol import is_unicode_text

MAX_LIMIT = 1000
FIND_PARAMS = frozenset(METHODS["find"].params)
MAX_SEARCH_CHARS = 1000


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
    # The gallery's filters (SQLite catalog only; `find` never sets them): `generator` and
    # `sampler` (exact), `after` / `before` (ISO 8601 UTC mtimes: at or after, before),
    # `size` ((width, height), exact), `has_metadata` (a front end was recognised or not),
    # `cursor` ((mtime, id) of the last row of the previous page: rows after it),
    # `hide_duplicates` (only the first row of each set of identical bytes: `duplicate_of`).
    generator: str | None = None
    sampler: str | None = None
    after: str | None = None
    before: str | None = None
    size: tuple[int, int] | None = None
    has_metadata: bool | None = None
    cursor: tuple[str, int] | None = None
    hide_duplicates: bool = False


class SearchTimedOut(Exception):
    """A search the catalog did not answer in time (a slow or locked database); the message
    names the database. The control socket answers it with the error code `timeout`."""


class Searchable(Protocol):
    """A sink that can answer `find`."""

    def find(self, query: CatalogQuery) -> list[dict[str, Any]]:
        """Return the matching rows (FOUND_KEYS), newest first. Raise SearchTimedOut if the
        catalog does not answer in time."""


def _typed(params: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    value = params.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"param {name!r} has the wrong type")
    return value


def query_from_params(params: dict[str, Any]) -> CatalogQuery:
    """Given `find` params (all optional): `prompt` (words), `model`, `lora`, `container`
    (strings), `seed` (an integer), `since` (a duration: seconds or "7d"), `limit`
    (1..MAX_LIMIT, default 50), return the CatalogQuery. Raise ValueError (saying which
    param) for an unknown param, a wrong type or value, text that is not Unicode."""
    unknown = sorted(set(params) - FIND_PARAMS)
    if unknown:
        raise ValueError(f"unknown param {unknown[0]!r} (known: {', '.join(sorted(FIND_PARAMS))})")
    for name, value in sorted(params.items()):
        if not is_unicode_text(value):  # a lone surrogate: no catalog can search for it
            raise ValueError(f"{name} is not valid Unicode text")
    texts = {name: _typed(params, name, str, None) for name in ("prompt", "model", "lora")}
    for name, text in texts.items():
        if text is not None and not text.strip():
            raise ValueError(f"{name} is empty")
        if text is not None and len(text) > MAX_SEARCH_CHARS:
            raise ValueError(f"{name} is over {MAX_SEARCH_CHARS} characters")
    prompt = texts["prompt"]
    if prompt is not None and not any(c.isalnum() for c in prompt):
        raise ValueError("prompt has no word to search for")
    since = params.get("since")
    since_s = None
    if since is not None:
        try:
            since_s = parse_duration(since)
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None
    limit = _typed(params, "limit", int, 50)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    return CatalogQuery(
        prompt=prompt,
        model=texts["model"],
        seed=_typed(params, "seed", int, None),
        lora=texts["lora"],
        container=_typed(params, "container", str, None),
        since_s=since_s,
        limit=limit,
    )
