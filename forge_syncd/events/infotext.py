r"""A1111/Forge "infotext" taken apart in time linear in its length.

Infotext is the prompt, then lines starting with `Negative prompt:`, then one settings line
`Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: "x, y", ...`. This module used
to read the settings as A1111 does, with `findall` of the regex
`\s*([\w ./-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)`, which backtracks: every start
inside a long run of key characters without a colon rescans the run, so "Steps: 20, " and
40 KB of words took 8-20 s (1 MiB: hours), all in one C call holding the GIL.

Here the same pairs are found without rescanning. A pair ends its key at a colon that follows
a key character (`KEY_END`); the key runs back from that colon over key characters, but not
back past where the previous pair ended; the value is a quoted string when one closes right
before a comma or the end, else everything up to the next comma. Each regex below is a
literal and one character class repeated, with nothing after the repeat to retry, or (QUOTED)
a possessive repeat of alternatives that start with different characters: none backtracks, so
each call is linear in what it consumes, and each part of the line is consumed a bounded
number of times (a search, a key read backwards, a value; a quoted value that fails to close
before a comma ends before the next value starts). tests/unit/test_metadata_bounds.py checks
that the pairs equal the old regex's on random lines.
"""

from __future__ import annotations

import re

from forge_syncd.events.budget import MetadataProblem, Meter

NEGATIVE = "Negative prompt:"
SETTINGS_START = "Steps:"
KEY_END = re.compile(r"[\w ./-]:")  # the last character of a key and its colon
KEY_RUN = re.compile(r"[\w ./-]*")  # used on the reversed line: a key, read backwards
SPACE_RUN = re.compile(r"\s*")
QUOTED = re.compile(r'"(?:[^\\"]|\\.)*+"')  # possessive: a quoted string never backtracks
NEGATIVE_LINE = re.compile(r"\nNegative prompt:[^\S\n]*")


def split_infotext(text: str, meter: Meter) -> tuple[str, str, dict[str, str]]:
    """Given A1111/Forge infotext, return (prompt, negative prompt, settings), unstripped.

    Every line starting with "Negative prompt:" and all lines after the first of them are
    the negative prompt (that label and the blanks after it removed); the last line is the
    settings line when it starts with "Steps:". Raise BudgetExceeded if the CPU budget runs
    out.
    """
    stripped = text.strip()
    newline = stripped.rfind("\n")
    body = stripped
    settings: dict[str, str] = {}
    if stripped[newline + 1 :].lstrip().startswith(SETTINGS_START):
        settings = parse_settings(stripped[newline + 1 :], meter)
        body = stripped[: max(newline, 0)]
    marked = "\n" + body
    cut = marked.find("\n" + NEGATIVE)
    if cut < 0:
        return body, "", settings
    return marked[1:cut], NEGATIVE_LINE.sub("\n", marked[cut:])[1:], settings


def parse_settings(line: str, meter: Meter) -> dict[str, str]:
    """Given an infotext settings line (no newline in it), return its key: value pairs.

    Keys and values are stripped, values also of surrounding quotes, the later of two equal
    keys wins: the pairs A1111's own regex finds. Past `max_settings` pairs the rest is
    ignored and noted on the meter. Raise BudgetExceeded if the CPU budget runs out.
    """
    settings: dict[str, str] = {}
    backwards = line[::-1]
    end = len(line)
    pos = found = 0
    while (key_end := KEY_END.search(line, pos)) is not None:
        if found == meter.budget.max_settings:
            meter.note(
                MetadataProblem.TOO_LARGE,
                f"infotext settings line has over {found} entries, the rest ignored",
            )
            break
        colon = key_end.end() - 1
        run_start = end - colon  # where line[colon - 1] is in the reversed line
        key_start = colon - (_run_end(KEY_RUN, backwards, run_start, end - pos) - run_start)
        value, pos = _value(line, _run_end(SPACE_RUN, line, colon + 1, end))
        settings[line[key_start:colon].strip()] = value.strip().strip('"')
        found += 1
        meter.tick("infotext settings")
    return settings


def _value(line: str, start: int) -> tuple[str, int]:
    """Given a settings line and where a value starts, return the value and where the next
    pair may start (after the comma that ends the value)."""
    if line.startswith('"', start):
        quoted = QUOTED.match(line, start)
        if quoted is not None and (quoted.end() == len(line) or line[quoted.end()] == ","):
            return quoted.group(), quoted.end() + 1
    comma = line.find(",", start)
    if comma < 0:
        return line[start:], len(line)
    return line[start:comma], comma + 1


def _run_end(run: re.Pattern[str], text: str, start: int, stop: int) -> int:
    """Given a pattern of one repeated character class, return where its run from `start`
    (not past `stop`) ends."""
    matched = run.match(text, start, stop)
    return start if matched is None else matched.end()
