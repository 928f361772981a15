"""The gallery's HTML, rendered on the server. Every value from the catalog is hostile text
(a prompt may hold markup, quotes, bidi marks, control characters, a megabyte): `text()`
escapes it for both element content and attribute values, drops control characters, and
every value sits in an element that isolates its direction. No inline script or style: the
pages load /static/gallery.js and /static/gallery.css (CSP `default-src 'self'`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import urlencode

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
PREVIEW = 160
FILTERS: tuple[str, ...] = ("q", "container", "generator", "model", "lora", "sampler", "size")
FILTERS += ("metadata",)
FILTERS += ("since", "until", "duplicates")
COMPARED = (
    "container",
    "path",
    "mtime",
    "size",
    "generator",
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "sampler",
    "scheduler",
    "cfg_scale",
    "denoise",
    "model",
    "vae",
    "loras",
    "width",
    "height",
    "duration_s",
    "frame_rate",
)


def text(value: Any, limit: int | None = None) -> str:
    """`value` as escaped HTML text (quotes too); None as empty; cut at `limit` chars."""
    if value is None:
        return ""
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if limit is not None and len(shown) > limit:
        shown = shown[:limit] + "…"
    return escape(CONTROL.sub("", shown), quote=True)


def thumb_url(row: dict[str, Any]) -> str:
    sha = row.get("sha256")
    if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha):
        return f"/thumb/{sha}.webp"
    return f"/thumb/item/{int(row['id'])}.webp"


def card(row: dict[str, Any]) -> str:
    caption = row.get("prompt") or row.get("path")
    return (
        f'<a class="card" href="/item/{int(row["id"])}" data-id="{int(row["id"])}">'
        f'<img loading="lazy" src="{thumb_url(row)}" alt="{text(caption, PREVIEW)}">'
        f'<bdi class="cap">{text(caption, PREVIEW)}</bdi></a>'
    )


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title>"
        '<link rel="stylesheet" href="/static/gallery.css">'
        '<script src="/static/gallery.js" defer></script></head>'
        '<body><header><a class="home" href="/">forge-sync gallery</a></header>'
        f"{body}</body></html>"
    )


def _select(name: str, values: Iterable[dict[str, Any]], chosen: str) -> str:
    options = [f'<option value="">{name}: any</option>']
    for entry in values:
        value = str(entry["value"])
        picked = " selected" if value == chosen else ""
        options.append(
            f'<option value="{text(value)}"{picked}>'
            f"{text(value, 60)} ({int(entry['count'])})</option>"
        )
    return f'<select name="{name}" aria-label="{name}">{"".join(options)}</select>'


def _duplicates(chosen: str) -> str:
    """Whether rows whose bytes an earlier row holds (`duplicate_of`) are shown."""
    hide = " selected" if chosen == "hide" else ""
    return (
        '<select name="duplicates" aria-label="duplicates">'
        '<option value="">duplicates: show</option>'
        f'<option value="hide"{hide}>duplicates: hide</option></select>'
    )


def grid(
    last_id: int,
    rows: list[dict[str, Any]],
    facets: dict[str, Any],
    filters: dict[str, str],
    next_cursor: str | None,
) -> str:
    """The grid page: search form, facets, the first page of cards; the script fetches the
    next pages from /api/search (`data-next`) and adds live rows (unfiltered view)."""
    inputs = (
        '<input type="search" name="q" placeholder="search prompts" aria-label="search"'
        f' value="{text(filters.get("q"))}">'
        + "".join(
            _select(name, facets.get(name, []), filters.get(name, ""))
            for name in ("container", "generator", "model", "sampler", "lora", "size", "metadata")
        )
        + '<input name="since" placeholder="since (7d, 2026-01-31)" aria-label="since"'
        + f' value="{text(filters.get("since"))}">'
        + '<input name="until" placeholder="until (2026-02-28)" aria-label="until"'
        + f' value="{text(filters.get("until"))}">'
        + _duplicates(filters.get("duplicates", ""))
        + '<button type="submit">Search</button>'
    )
    query = urlencode({k: v for k, v in filters.items() if v})
    next_attr = f' data-next="{text(next_cursor)}"' if next_cursor else ""
    cards = "".join(card(row) for row in rows) or '<p class="empty">No image matches.</p>'
    return page(
        "forge-sync gallery",
        f'<form class="search" method="get" action="/">{inputs}</form>'
        f'<p class="count">{int(facets.get("total", 0))} files in the catalog</p>'
        f'<main id="grid" class="grid" data-query="{text(query)}"{next_attr}'
        f' data-live="{"0" if query else "1"}" data-after="{int(last_id)}">'
        f'{cards}</main><div id="more"></div>',
    )


def _field(name: str, value: Any, copy: bool = False) -> str:
    button = f'<button class="copy" data-copy="f-{name}">copy</button>' if copy else ""
    return (
        f'<tr><th>{text(name)}</th><td><bdi id="f-{name}" class="value">{text(value)}</bdi>'
        f"{button}</td></tr>"
    )


def is_video(row: dict[str, Any]) -> bool:
    """Whether a row is a video (a duration, or a video file name)."""
    name = str(row.get("path", "")).lower()
    return row.get("duration_s") is not None or name.endswith((".mp4", ".webm", ".mkv", ".mov"))


def media_tag(row: dict[str, Any]) -> str:
    src = f"/file/{int(row['id'])}"
    if is_video(row):
        return f'<video controls preload="metadata" src="{src}"></video>'
    return f'<img class="full" src="{src}" alt="{text(row.get("prompt"), PREVIEW)}">'


def item(row: dict[str, Any]) -> str:
    """The detail page: the image, every field, copy buttons, versions, samplers."""
    copyable = {"prompt", "negative_prompt", "seed"}
    fields = "".join(
        _field(name, row.get(name), name in copyable)
        for name in ("id", *COMPARED, "sha256", "versioned_at", "purged_at", "metadata_error")
    )
    params = json.dumps({k: row.get(k) for k in COMPARED}, ensure_ascii=False, indent=1)
    samplers = "".join(
        f"<li><bdi>{text(stage)}</bdi></li>" for stage in (row.get("samplers") or [])
    )
    versions = "".join(
        f'<li><a href="/item/{int(v["id"])}">{text(v["mtime"])}</a> {int(v["size"])} bytes'
        f"{' (earlier version)' if v['versioned_at'] else ''}</li>"
        for v in row.get("versions", [])
    )
    body = (
        f'<main class="detail" data-id="{int(row["id"])}">{media_tag(row)}'
        f'<p><a class="button" href="/file/{int(row["id"])}?download=1">download original</a> '
        f'<button class="copy" data-copy="params">copy all parameters</button> '
        f'<a class="button" href="/compare?a={int(row["id"])}">compare…</a></p>'
        f"<table>{fields}</table>"
        f'<pre id="params" class="params" hidden>{text(params)}</pre>'
        f"<h2>Samplers</h2><ol>{samplers}</ol><h2>Versions</h2><ul>{versions}</ul></main>"
    )
    return page(f"{row.get('path')}", body)


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Two rows side by side; a parameter whose values differ has class `diff`."""
    rows = []
    for name in COMPARED:
        differ = a.get(name) != b.get(name)
        rows.append(
            f'<tr class="{"diff" if differ else "same"}" data-field="{name}"><th>{name}</th>'
            f"<td><bdi>{text(a.get(name))}</bdi></td><td><bdi>{text(b.get(name))}</bdi></td></tr>"
        )
    body = (
        f'<main class="compare"><div class="pair">{media_tag(a)}{media_tag(b)}</div>'
        f'<table><tr><th></th><th><a href="/item/{int(a["id"])}">#{int(a["id"])}</a></th>'
        f'<th><a href="/item/{int(b["id"])}">#{int(b["id"])}</a></th></tr>'
        f"{''.join(rows)}</table></main>"
    )
    return page("compare", body)


def pick_other(a: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """Compare with one id only: choose the other from the newest rows."""
    cards = "".join(
        f'<a class="card" href="/compare?a={int(a["id"])}&amp;b={int(r["id"])}">'
        f'<img loading="lazy" src="{thumb_url(r)}" alt="">'
        f'<bdi class="cap">{text(r.get("prompt") or r.get("path"), PREVIEW)}</bdi></a>'
        for r in rows
        if r["id"] != a["id"]
    )
    return page(
        "compare with…", f'<h1>Compare #{int(a["id"])} with…</h1><main class="grid">{cards}</main>'
    )


def message(status: int, words: str) -> str:
    return page(str(status), f'<main class="message"><h1>{status}</h1><p>{text(words)}</p></main>')
