"""`/events`: Server-Sent Events of rows added to the catalog or updated in place, found by
polling its change numbers (`media_changes`: the catalog is another process's database,
there is nothing to subscribe to). Each event's `id` is the change number and its data the
row (with the row's `id`). A client that reconnects with `Last-Event-ID`, or connects with
`?after=<n>` (the grid: the last change when it was rendered), gets what it missed (at most
BATCH rows a poll)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request

from forge_syncd.gallery.source import CatalogReader, CatalogUnavailable

POLL_S = 1.0
KEEPALIVE_S = 15.0
BATCH = 100
CARD_KEYS: tuple[str, ...] = ("id", "container", "path", "mtime", "sha256", "generator")
CARD_KEYS += ("prompt", "model", "sampler", "seed", "width", "height", "duration_s")


def card_event(row: dict[str, object]) -> str:
    """One SSE message: `id`, `event: item`, the row's card fields as one line of JSON
    (ASCII only: no line break or separator a client would split on)."""
    data = json.dumps({k: row.get(k) for k in CARD_KEYS}, ensure_ascii=True, separators=(",", ":"))
    return f"id: {int(str(row['change']))}\nevent: item\ndata: {data}\n\n"


async def event_stream(request: Request, catalog: CatalogReader) -> AsyncIterator[str]:
    """Rows as they are added or updated, and a comment every KEEPALIVE_S; until the client
    goes."""
    given = request.headers.get("last-event-id") or request.query_params.get("after", "")
    last = (
        int(given)
        if given.isdigit() and len(given) < 19
        else await anyio.to_thread.run_sync(catalog.last_change)
    )
    yield "retry: 3000\n\n"
    quiet = 0.0
    while True:
        await anyio.sleep(POLL_S)
        try:
            rows = await anyio.to_thread.run_sync(catalog.changed_after, last, BATCH)
        except CatalogUnavailable:
            rows = []  # a database down for a while: the next poll asks again
        for row in rows:
            last = max(last, int(row["change"]))
            yield card_event(row)
        quiet = 0.0 if rows else quiet + POLL_S
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ": keep-alive\n\n"
