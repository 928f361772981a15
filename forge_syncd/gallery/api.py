"""The gallery's request parameters: the search filters (`/`, `/api/search`), its cursor."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from forge_syncd.catalog.query import CatalogQuery, query_from_params
from forge_syncd.config.units import parse_duration

SIZE = re.compile(r"^([0-9]{1,6})x([0-9]{1,6})$")
PAGE = 60
MAX_PAGE = 500
STAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


class BadRequest(ValueError):
    """A parameter that cannot be used (the message names it)."""


def stamp(moment: datetime) -> str:
    """An mtime as the catalog keeps it (the events' ISO 8601 UTC form)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def moment(name: str, value: str, *, end_of_day: bool = False) -> str:
    """Given `since` or `until`: a date, a date and time (UTC unless it says), or for
    `since` a duration ("7d": that long ago), return the catalog mtime it means. A bare
    `until` date includes that whole day."""
    if STAMP.match(value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{name}: not a date: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if end_of_day and len(value) == 10:
            parsed += timedelta(days=1)
        return stamp(parsed)
    if name == "since":
        try:
            return stamp(datetime.now(UTC) - timedelta(seconds=parse_duration(value)))
        except ValueError:
            pass
    raise BadRequest(f"{name}: expected a date like 2026-01-31 or a duration like 7d")


def encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["mtime"], row["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        mtime, row_id = json.loads(raw)
    except (ValueError, TypeError):
        raise BadRequest("cursor: not one this gallery gave") from None
    if not isinstance(mtime, str) or not isinstance(row_id, int) or isinstance(row_id, bool):
        raise BadRequest("cursor: not one this gallery gave")
    if not STAMP.match(mtime) or not 0 <= row_id < 2**63:
        raise BadRequest("cursor: not one this gallery gave")
    try:
        datetime.fromisoformat(mtime.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest("cursor: not one this gallery gave") from None
    return mtime, row_id


def search_query(params: dict[str, str]) -> CatalogQuery:
    """Given the query string (q, container, generator, model, lora, sampler, since, until,
    limit, cursor, duplicates), return the CatalogQuery. Raise BadRequest naming a bad parameter."""
    known = {"q", "container", "generator", "model", "lora", "sampler", "since", "until"}
    known |= {"size", "metadata", "limit", "cursor", "duplicates"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(
            f"unknown parameter {unknown[0][:40]!r} (known: {', '.join(sorted(known))})"
        )
    given = {k: v for k, v in params.items() if v != ""}
    shared: dict[str, Any] = {"prompt": given.get("q")}
    shared |= {k: given.get(k) for k in ("model", "lora", "container")}
    try:
        limit = int(given.get("limit", PAGE))
    except ValueError:
        raise BadRequest("limit: expected a number") from None
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be 1..{MAX_PAGE}")
    try:
        query = query_from_params(
            {k: v for k, v in shared.items() if v is not None} | {"limit": limit}
        )
    except ValueError as exc:
        raise BadRequest(str(exc).replace("prompt", "q")) from None
    return dataclasses.replace(
        query,
        generator=given.get("generator"),
        sampler=given.get("sampler"),
        after=moment("since", given["since"]) if "since" in given else None,
        before=moment("until", given["until"], end_of_day=True) if "until" in given else None,
        size=size_of(given["size"]) if "size" in given else None,
        has_metadata=metadata_of(given["metadata"]) if "metadata" in given else None,
        cursor=decode_cursor(given["cursor"]) if "cursor" in given else None,
        hide_duplicates=duplicates_of(given.get("duplicates", "show")),
    )


def size_of(value: str) -> tuple[int, int]:
    found = SIZE.match(value)
    if found is None:
        raise BadRequest("size: expected WIDTHxHEIGHT like 1024x1024")
    return int(found.group(1)), int(found.group(2))


def metadata_of(value: str) -> bool:
    if value not in ("yes", "no"):
        raise BadRequest("metadata: expected yes or no")
    return value == "yes"


def duplicates_of(value: str) -> bool:
    """`duplicates=show` (the default) or `hide` (rows whose bytes an earlier row holds)."""
    if value not in ("show", "hide"):
        raise BadRequest("duplicates: expected show or hide")
    return value == "hide"
