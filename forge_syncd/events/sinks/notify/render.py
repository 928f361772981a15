"""What a notification says, as data, and how each service's markup is written safely.

A `Notice` is plain text in three parts: `title` (who: container names), `headline` (what
happened, one line) and `details` (more lines, each starting with our own word: "first:",
"prompt:", "error:"), plus an optional gallery `link` and the image to attach. Every part
that came from a container (file names, prompts, error texts) went through `clean()` first:
control and format characters (CR, LF, ESC, bidi overrides and marks, zero-width joiners)
are shown as escapes such as `\\u202e`, so a hostile name can neither start a line of its
own nor reorder what follows, and each part is cut to a bound. Each service then writes the
notice in its own markup with everything escaped (`discord_text`, `telegram_html`) or as
plain text (ntfy, Gotify), and `shrink` cuts details, then the headline, until the result
fits the service's limit (`utf16_len`: Telegram and Discord count UTF-16 code units).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from forge_syncd.text import printable

ELLIPSIS = "…"
TITLE_MAX = 200
HEADLINE_MAX = 400
LINE_MAX = 600
NAME_MAX = 160  # a file name shown in a message
PROMPT_MAX = 300


@dataclass(frozen=True)
class ImageRef:
    """A landed image that may be attached: `path` relative to its container (shown),
    `local` the exact local path, `size` in bytes when it landed."""

    path: str
    local: bytes
    size: int


@dataclass(frozen=True)
class Attachment:
    """File bytes to upload: a safe ASCII `name`, its MIME type (from its magic bytes)."""

    name: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class Notice:
    """One notification, in plain text (see the module doc). `kind` is one of
    `when`'s words; `key` is the message's own key (its dedupe id where a service has
    one)."""

    kind: str
    key: str
    title: str
    headline: str
    details: tuple[str, ...] = ()
    link: str | None = None
    image: ImageRef | None = None

    def plain(self, link: bool = True) -> str:
        """Return the whole notice as plain text: "title: headline", the details, the
        link."""
        lines = [f"{self.title}: {self.headline}", *self.details]
        if link and self.link:
            lines.append(self.link)
        return "\n".join(lines)

    def body(self, link: bool = True) -> str:
        """Return the notice without its title (for services that show the title apart)."""
        lines = [self.headline, *self.details]
        if link and self.link:
            lines.append(self.link)
        return "\n".join(lines)


def clip(text: str, limit: int) -> str:
    """Given text and a bound in characters, return it cut to the bound (ending in "…")."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def clean(text: str, limit: int = LINE_MAX) -> str:
    """Given untrusted text (a remote file name, a prompt, an error message), return it
    with every control or format character shown as an escape, cut to `limit` characters
    (the escape happens on at most `limit` characters of input: a 1 MB name costs no more
    than a short one)."""
    return clip(printable(text[: limit + 1]), limit)


def one_line(text: str, limit: int = PROMPT_MAX) -> str:
    """Like `clean`, with runs of whitespace (newlines too) folded into one space first:
    prompts read as one line."""
    return clean(" ".join(text[: limit * 4].split()), limit)


def utf16_len(text: str) -> int:
    """Return the length in UTF-16 code units (what Telegram and Discord count)."""
    return len(text.encode("utf-16-le")) // 2


def shrink(notice: Notice, fits: Callable[[Notice], bool]) -> Notice:
    """Given a notice and a test of whether its rendering fits the service, return the
    longest version that fits: the details cut first (from the end), then the headline,
    then the title. The test must hold for a notice with a short title and headline."""
    if fits(notice):
        return notice
    block = "\n".join(notice.details)
    cut = _longest(len(block), lambda n: fits(_with_details(notice, block, n)))
    if cut is not None:
        return _with_details(notice, block, cut)
    bare = dataclasses.replace(notice, details=())
    cut = _longest(
        len(notice.headline),
        lambda n: fits(dataclasses.replace(bare, headline=clip(notice.headline, n))),
    )
    if cut is not None:
        return dataclasses.replace(bare, headline=clip(notice.headline, cut))
    short = dataclasses.replace(bare, headline=clip(notice.headline, 40), link=None)
    cut = _longest(
        len(notice.title), lambda n: fits(dataclasses.replace(short, title=clip(notice.title, n)))
    )
    return dataclasses.replace(short, title=clip(notice.title, cut or 1))


def _with_details(notice: Notice, block: str, keep: int) -> Notice:
    kept = clip(block, keep) if keep < len(block) else block
    lines = tuple(line for line in kept.split("\n") if line) if keep > 0 else ()
    return dataclasses.replace(notice, details=lines)


def _longest(size: int, ok: Callable[[int], bool]) -> int | None:
    """Return the largest n in 1..size with ok(n) (ok is monotone), or None."""
    if size < 1 or not ok(1):
        return None
    low, high = 1, size
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low


# -- Discord markdown ---------------------------------------------------------------------
# Discord's markdown treats a backslash before any ASCII punctuation as "this character,
# literally". These are the characters that start formatting, quotes, spoilers, code, masked
# links, headings, custom emoji, timestamps and mentions (<@id>, <#id>, @everyone); mentions
# are also disabled by `allowed_mentions` in every request.
DISCORD_SPECIAL = frozenset("\\*_~`|<>[]()#@")


def discord_escape(text: str) -> str:
    """Given plain text, return Discord markdown that shows exactly it: special characters
    backslash-escaped, and "://" broken so a name is never an automatic link."""
    escaped = "".join("\\" + c if c in DISCORD_SPECIAL else c for c in text)
    return escaped.replace("://", ":\\/\\/")


def discord_text(notice: Notice) -> str:
    """Return a notice as a Discord message's content: the title in bold, then the rest,
    all escaped; the link as is (it is ours: the configured gallery)."""
    lines = [f"**{discord_escape(notice.title)}**: {discord_escape(notice.headline)}"]
    lines += [discord_escape(line) for line in notice.details]
    if notice.link:
        lines.append(notice.link)
    return "\n".join(lines)


# -- Telegram HTML --------------------------------------------------------------------------
def telegram_html(notice: Notice) -> str:
    """Return a notice as Telegram HTML (parse_mode HTML): every <, > and & of the text
    written as an entity, the title bold, the link an anchor."""
    lines = [
        f"<b>{html.escape(notice.title, quote=False)}</b>: "
        + html.escape(notice.headline, quote=False)
    ]
    lines += [html.escape(line, quote=False) for line in notice.details]
    if notice.link:
        href = html.escape(notice.link, quote=True)
        lines.append(f'<a href="{href}">{html.escape(notice.link, quote=False)}</a>')
    return "\n".join(lines)


# -- HTTP header values (ntfy) --------------------------------------------------------------
HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
ENCODED_WORD_BYTES = 45  # base64 of 45 bytes is 60 characters: each word stays under 75


def header_value(text: str, limit: int = 1024) -> str:
    """Given text for an HTTP header (ntfy reads RFC 2047 encoded words in any header),
    return a header value that is printable ASCII: as is when it already is, else UTF-8
    encoded words ("=?UTF-8?B?...?=") separated by spaces, which a decoder joins back
    without them. Line breaks are kept as encoded bytes, never raw: a header never ends
    early. At most `limit` characters of `text` are used."""
    text = text[:limit]
    if HEADER_SAFE.fullmatch(text) and "=?" not in text:
        return text
    words = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > ENCODED_WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += data
    if chunk:
        words.append(chunk)
    return " ".join(f"=?UTF-8?B?{base64.b64encode(word).decode('ascii')}?=" for word in words)


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(path: str, extension: str) -> str:
    """Given a remote file's path and the extension its bytes call for, return a file name
    for an upload: the base name in [A-Za-z0-9._-] (others become "_"), at most 80
    characters, never hidden, ending in `extension`."""
    base = path.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = SAFE_NAME.sub("_", stem).strip("._-")[:72] or "image"
    return f"{stem}.{extension}"
