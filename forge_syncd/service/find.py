"""The control method `find`: a search of the catalog of the first sink that keeps one,
answered in one response line (see `find_query` for its params)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_syncd.catalog.query import CatalogQuery, SearchTimedOut, query_from_params
from forge_syncd.control.protocol import (
    BAD_PARAMS,
    INTERNAL,
    NOT_FOUND,
    TIMEOUT,
    Request,
    RequestError,
    json_text,
)
from forge_syncd.logs import get_logger

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView

# A response line must stay under the client's 1 MiB line limit: long prompts are cut, and
# rows stop (`truncated`) before the line would pass this.
MAX_FOUND_BYTES = 900 * 1024
MAX_FOUND_TEXT = 16 * 1024
NO_CATALOG = "no catalog: configure a catalog or postgres sink"


class CatalogFinder:
    """Answers `find` from the daemon's sinks."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view

    def find(self, request: Request) -> dict[str, Any]:
        """Search the catalog: `{"files": [FOUND_KEYS rows, newest first], "catalog": its
        sink's name, "truncated": whether rows were left out to keep the response under
        1 MiB}`. No sink that keeps a catalog is `not_found`; one that does not answer in
        time is `timeout` (its message names the database); one that fails is `internal`,
        with its error."""
        query = find_query(request)
        try:
            found = self.view.dispatcher.searchable()
            if found is None:
                raise RequestError(NOT_FOUND, NO_CATALOG, request.id)
            name, sink = found
            rows = sink.find(query)
        except RequestError:
            raise
        except SearchTimedOut as exc:
            get_logger().warning("catalog_search_timeout", error=str(exc)[:500])
            raise RequestError(TIMEOUT, f"catalog search: {exc}", request.id) from None
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            get_logger().error("catalog_search_failed", error=error)
            raise RequestError(INTERNAL, f"catalog search failed: {error}", request.id) from exc
        files, truncated = bounded_rows(rows)
        return {"files": files, "catalog": name, "truncated": truncated}


def find_query(request: Request) -> CatalogQuery:
    """Given a `find` request, return its CatalogQuery (`catalog.query.query_from_params`).
    Raise RequestError (`bad_params`) for an unknown param, a wrong type or value, text
    that is not Unicode."""
    try:
        return query_from_params(request.params)
    except ValueError as exc:
        raise RequestError(BAD_PARAMS, str(exc), request.id) from None


def bounded_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Return the rows that fit in one response line (prompts cut to MAX_FOUND_TEXT
    characters), and whether some were left out."""
    kept: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        row = dict(row)
        for key in ("prompt", "negative_prompt"):
            if isinstance(row.get(key), str) and len(row[key]) > MAX_FOUND_TEXT:
                row[key] = row[key][:MAX_FOUND_TEXT]
        total += len(json_text(row).encode()) + 1
        if total > MAX_FOUND_BYTES:
            return kept, True
        kept.append(row)
    return kept, False
