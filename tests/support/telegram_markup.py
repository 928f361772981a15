"""Telegram's message markup as its Bot API checks it, for the fake Telegram server.

`render(text, parse_mode)` returns the text a Telegram user would see (markup removed,
escapes resolved), or raises MarkupError with the description Telegram answers with
("can't parse entities: ..."). It follows the Bot API's "Formatting options"
(https://core.telegram.org/bots/api#formatting-options):

- MarkdownV2: any character of code 1-126 may be escaped with a preceding backslash; outside
  entities the characters _ * [ ] ( ) ~ ` > # + - = | { } . ! must be escaped; entities are
  *bold*, _italic_, __underline__, ~strike~, ||spoiler||, `code`, ```pre```, [text](url) and
  must be closed; inside code and pre only ` and backslash are special.
- HTML: only the tags b strong i em u ins s strike del span(class=tg-spoiler) tg-spoiler a
  code pre blockquote tg-emoji; every <, > and & that is not part of a tag or an entity must
  be written &lt; &gt; &amp; (named entities &lt; &gt; &amp; &quot; and numeric ones only).
- None/"" (plain text): the text as is.

Strict where Telegram is strict, so a message that passes here also renders there; it does
not model entity nesting rules beyond balance.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

MARKDOWN_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
HTML_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
HTML_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class MarkupError(ValueError):
    """Telegram would refuse the text: the message is its description."""


def render(text: str, parse_mode: str | None) -> str:
    """Given a message text and its parse_mode, return what the user sees. Raise MarkupError
    with Telegram's description, ValueError for an unknown parse mode."""
    if not parse_mode:
        return text
    if parse_mode == "MarkdownV2":
        return _markdown_v2(text)
    if parse_mode == "HTML":
        return _html(text)
    if parse_mode == "Markdown":
        return _markdown_legacy(text)
    raise MarkupError(f"unsupported parse_mode {parse_mode!r}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


def _markdown_v2(text: str) -> str:
    out: list[str] = []
    open_marks: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or not 1 <= ord(text[index + 1]) <= 126:
                raise MarkupError(
                    "can't parse entities: Character '\\' is reserved and must be escaped "
                    f"with the preceding '\\' at byte offset {_byte_offset(text, index)}"
                )
            out.append(text[index + 1])
            index += 2
            continue
        if text.startswith("```", index):
            end = _closing(text, index + 3, "```")
            out.append(_code_body(text[index + 3 : end]).split("\n", 1)[-1])
            index = end + 3
            continue
        if char == "`":
            end = _closing(text, index + 1, "`")
            out.append(_code_body(text[index + 1 : end]))
            index = end + 1
            continue
        mark = next((m for m in ("__", "||", "*", "_", "~") if text.startswith(m, index)), None)
        if mark is not None:
            if open_marks and open_marks[-1] == mark:
                open_marks.pop()
            else:
                open_marks.append(mark)
            index += len(mark)
            continue
        if char == "[":
            open_marks.append("[")
            index += 1
            continue
        if char == "]" and open_marks and open_marks[-1] == "[":
            open_marks.pop()
            if not text.startswith("(", index + 1):
                raise MarkupError("can't parse entities: Can't find end of the URL")
            index = _link_end(text, index + 2)
            continue
        if char in MARKDOWN_V2_RESERVED:
            raise MarkupError(
                f"can't parse entities: Character '{char}' is reserved and must be escaped "
                "with the preceding '\\'"
            )
        out.append(char)
        index += 1
    if open_marks:
        raise MarkupError(
            f"can't parse entities: Can't find end of the entity starting at byte offset "
            f"{_byte_offset(text, len(text))}"
        )
    return "".join(out)


def _closing(text: str, start: int, mark: str) -> int:
    """Return where the unescaped `mark` closing a code entity begins."""
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text.startswith(mark, index):
            return index
        index += 1
    raise MarkupError(
        "can't parse entities: Can't find end of Pre entity at byte offset "
        f"{_byte_offset(text, start)}"
    )


def _code_body(body: str) -> str:
    """Resolve the escapes of a code entity's body (only ` and backslash may be escaped)."""
    return re.sub(r"\\([`\\])", r"\1", body)


def _link_end(text: str, start: int) -> int:
    """Return the index after the `)` ending the URL part of an inline link."""
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == ")":
            return index + 1
        index += 1
    raise MarkupError("can't parse entities: Can't find end of a URL")


def _markdown_legacy(text: str) -> str:
    """The legacy Markdown mode: *bold* _italic_ `code` [text](url); marks must be closed."""
    for mark in ("*", "_", "`"):
        if text.count(mark) % 2:
            raise MarkupError(
                "can't parse entities: Can't find end of the entity starting at byte offset "
                f"{_byte_offset(text, text.rfind(mark))}"
            )
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("*", "").replace("_", "")


class _HtmlChecker(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.out: list[str] = []
        self.stack: list[str] = []

    def _fail(self, reason: str) -> None:
        line, column = self.getpos()
        offset = sum(len(x) + 1 for x in self.source.split("\n")[: line - 1]) + column
        raise MarkupError(f"can't parse entities: {reason} at byte offset {offset}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            self._fail(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self._fail(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for char in "<>&":
            if char in data:
                self._fail(f"Unexpected {html.escape(char)} in text")
        self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in HTML_ENTITIES:
            self._fail(f'Unsupported HTML entity "&{name};"')
        self.out.append(HTML_ENTITIES[name])

    def handle_charref(self, name: str) -> None:
        code = int(name[1:], 16) if name[:1] in "xX" else int(name)
        self.out.append(chr(code))

    def unknown_decl(self, data: str) -> None:
        self._fail("Unsupported declaration")

    def handle_comment(self, data: str) -> None:
        self._fail("Unsupported comment")


def _html(text: str) -> str:
    if re.search(r"&(?![A-Za-z]+;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)", text):
        raise MarkupError('can\'t parse entities: Unexpected "&" in text')
    checker = _HtmlChecker(text)
    checker.feed(text)
    checker.close()
    if checker.rawdata:  # an unterminated tag such as "<b"
        raise MarkupError(f"can't parse entities: Unclosed start tag {checker.rawdata[:20]!r}")
    if checker.stack:
        raise MarkupError(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{checker.stack[-1]}\""
        )
    return "".join(checker.out)
