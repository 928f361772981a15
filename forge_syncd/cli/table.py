"""Tables for people: columns aligned by the width each cell shows, two spaces apart.

On a terminal a table fits its width: the columns marked `cut` (an error, a prompt, a path)
are shortened with "…", the rightmost first (never below a few characters; past that the
terminal wraps). Piped, every cell is
written whole. Colour is added after the widths are measured, so it never shifts a column.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from forge_syncd.cli.term import Out
from forge_syncd.text import printable

GAP = "  "
MIN_CUT = 12


class Column(NamedTuple):
    title: str
    right: bool = False  # numbers line up on the right
    cut: bool = False  # on a terminal, this column gives way to fit the width


class Cell(NamedTuple):
    """A cell's text (remote text allowed: it is shown escaped) and its style (term.STYLES)."""

    text: str
    style: str | None = None


def shown_width(text: str) -> int:
    """The columns `text` takes on a terminal: wide (East Asian) characters take two,
    combining marks none."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def cut_to(text: str, width: int) -> str:
    """Return `text` shortened to `width` columns, ending in "…" when cut."""
    if shown_width(text) <= width:
        return text
    kept = ""
    for char in text:
        if shown_width(kept + char) > width - 1:
            break
        kept += char
    return kept + "…"


def natural_width(columns: list[Column], rows: list[list[Cell | str]]) -> int:
    """The columns the table takes with every cell whole."""
    texts = [[printable(c.text if isinstance(c, Cell) else c) for c in row] for row in rows]
    widths = [
        max([shown_width(col.title)] + [shown_width(row[i]) for row in texts])
        for i, col in enumerate(columns)
    ]
    return sum(widths) + len(GAP) * (len(widths) - 1)


def render(out: Out, columns: list[Column], rows: list[list[Cell | str]]) -> list[str]:
    """Given the columns and the rows (cells as Cell or plain str), return the table's lines,
    the header first (bold on a colour terminal). Trailing spaces are never written."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    texts = [[printable(c.text) for c in row] for row in cells]
    widths = [
        max([shown_width(col.title)] + [shown_width(row[i]) for row in texts])
        for i, col in enumerate(columns)
    ]
    limit = out.width
    if limit is not None:
        over = sum(widths) + len(GAP) * (len(widths) - 1) - limit
        for i in reversed(range(len(columns))):
            if over > 0 and columns[i].cut and widths[i] > MIN_CUT:
                cut = min(over, widths[i] - MIN_CUT)
                widths[i] -= cut
                over -= cut
                texts = [[*r[:i], cut_to(r[i], widths[i]), *r[i + 1 :]] for r in texts]
    lines = [_line(out, columns, widths, [c.title for c in columns], ["bold"] * len(columns))]
    for row, text in zip(cells, texts, strict=True):
        lines.append(_line(out, columns, widths, text, [c.style for c in row]))
    return lines


def _line(
    out: Out, columns: list[Column], widths: list[int], texts: list[str], styles: list[str | None]
) -> str:
    parts = []
    last = len(columns) - 1
    for i, (col, text) in enumerate(zip(columns, texts, strict=True)):
        pad = " " * (widths[i] - shown_width(text))
        if col.right:
            parts.append(pad + out.paint(text, styles[i]))
        else:
            parts.append(out.paint(text, styles[i]) + ("" if i == last else pad))
    return GAP.join(parts).rstrip()


def print_table(out: Out, columns: list[Column], rows: list[list[Cell | str]]) -> None:
    for line in render(out, columns, rows):
        out.line(line)
