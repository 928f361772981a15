"""The gallery's pure parts: Range parsing, since/until, the cursor, HTML escaping of hostile
text, what counts as loopback (unit tier: no server)."""

from __future__ import annotations

import pytest

from forge_syncd.config.gallery import is_loopback
from forge_syncd.gallery.api import BadRequest, decode_cursor, encode_cursor, moment, search_query
from forge_syncd.gallery.files import parse_range
from forge_syncd.gallery.pages import card, grid, text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 0)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-1000", (0, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=100-", False),
        ("bytes=9-3", False),
        ("bytes=-0", False),
        ("bytes=-", False),
        ("bytes=x-y", False),
        ("bytes=0-1,5-9", None),  # several ranges: the whole file (RFC 9110 allows it)
        ("items=0-5", None),
    ],
)
def test_range_header(header: str | None, expected: object) -> None:
    """A single byte range of a 100-byte file: the span, the whole file, or unsatisfiable."""
    assert parse_range(header, 100) == expected


def test_since_until() -> None:
    """Dates and times become catalog mtimes (UTC); a bare `until` date includes its day;
    `since` also takes a duration; anything else names the parameter."""
    assert moment("since", "2026-01-31") == "2026-01-31T00:00:00.000000Z"
    assert moment("until", "2026-01-31", end_of_day=True) == "2026-02-01T00:00:00.000000Z"
    assert moment("since", "2026-01-31T10:00+02:00") == "2026-01-31T08:00:00.000000Z"
    assert moment("since", "7d") < moment("since", "1h")
    for name, value in (("until", "7d"), ("since", "yesterday"), ("since", "2026-13-01")):
        with pytest.raises(BadRequest, match=name):
            moment(name, value)


def test_cursor_round_trip_and_garbage() -> None:
    """A cursor is the last row's (mtime, id); anything else is refused, never trusted."""
    cursor = encode_cursor({"mtime": "2026-01-01T00:00:00.000000Z", "id": 7})
    assert decode_cursor(cursor) == ("2026-01-01T00:00:00.000000Z", 7)
    for garbage in ("", "!!", "W10", "WzEsMl0", "eyJhIjoxfQ"):
        with pytest.raises(BadRequest, match="cursor"):
            decode_cursor(garbage)


def test_search_query_checks_every_parameter() -> None:
    """The query string becomes one CatalogQuery; bad values name their parameter."""
    query = search_query({"q": "cat", "generator": "comfyui", "sampler": "euler", "limit": "5"})
    assert (query.prompt, query.generator, query.sampler, query.limit) == (
        "cat",
        "comfyui",
        "euler",
        5,
    )
    for params, word in (
        ({"q": "***"}, "q"),
        ({"limit": "501"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"model": "m" * 1001}, "model"),
        ({"nope": "1"}, "nope"),
    ):
        with pytest.raises(BadRequest, match=word):
            search_query(params)


def test_hostile_text_is_inert_html() -> None:
    """Markup, quotes, control characters: escaped or dropped, in content and attributes;
    a card's attributes hold only escaped text and integers."""
    hostile = '"><script>alert(1)</script>\x00\x1b[31m\u202e'
    assert text(hostile) == "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;[31m\u202e"
    assert text("x" * 5000, 10) == "x" * 10 + "…"
    html = card({"id": 3, "sha256": "../../etc", "prompt": hostile, "path": "a.png"})
    assert "<script>" not in html and 'src="/thumb/item/3.webp"' in html


def test_loopback() -> None:
    """Only loopback addresses (and `localhost`) may go without auth; names may not."""
    assert all(map(is_loopback, ("127.0.0.1", "127.8.9.1", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.168.1.5", "gallery.lan")))


def test_the_grid_can_hide_duplicates() -> None:
    """The grid's form offers `duplicates: hide` (rows whose bytes an earlier row holds,
    `duplicate_of`), keeps the choice, and the next pages ask the API with it."""
    shown = grid(0, [], {}, {}, None)
    assert '<select name="duplicates"' in shown and 'value="hide" selected' not in shown
    hidden = grid(0, [], {}, {"duplicates": "hide"}, None)
    assert '<option value="hide" selected>' in hidden
    assert 'data-query="duplicates=hide"' in hidden
    assert search_query({"duplicates": "hide"}).hide_duplicates
