"""Plain text for people: remote text made inert, plurals, "did you mean". Light (no
third-party imports): forge-syncctl's fast path and the daemon both use it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# What the daemon's STATUS=, `forge-syncctl status` and `--check-config` say when there is
# no container to sync (a fresh install): a healthy state, with the next step.
NO_CONTAINERS = "no containers configured: forge-syncctl add NAME ssh://user@host:port"


def printable(text: str, keep_newlines: bool = False) -> str:
    """Given text from anywhere (a remote file name, an error message), return it with every
    control or otherwise non-printable character (C0, DEL, C1, bidi overrides) escaped the
    way Python writes it (`\\x1b`, `\\x7f`, `\\u202e`); with `keep_newlines`, line breaks
    stay as they are."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (keep_newlines and c == "\n") else repr(c)[1:-1] for c in text
    )


def plural(count: int, word: str, many: str | None = None) -> str:
    """Given a count and a noun, return "1 file", "2 files", "0 files" (`many`: an
    irregular plural, e.g. "boxes")."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def closest(word: str, choices: Iterable[str]) -> str | None:
    """Return the choice `word` is most likely a typo of, or None."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def no_such(kind: str, word: str, choices: Iterable[str]) -> str:
    """Return the message for a name that names nothing, with the nearest name and the
    names there are: "no container 'forge-b' (did you mean 'forge-a'? containers: comfy-1,
    forge-a)"."""
    names = sorted(set(choices))
    shown = printable(repr(word))
    if not names:
        return f"no {kind} {shown} (there is none)"
    near = closest(word, names)
    hint = f"did you mean {near!r}? " if near else ""
    listed = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return f"no {kind} {shown} ({hint}{kind}s: {printable(listed)})"
