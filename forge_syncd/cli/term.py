"""Where forge-syncctl writes: stdout (data) and stderr (messages), a terminal or not.

On a terminal, tables fit its width and failures are coloured (unless `NO_COLOR` is set or
`TERM=dumb`); piped (ssh, cron, `| grep`, `watch -n`), every row is written whole, without
colour or cuts. Every text that may hold remote data goes through `printable` first.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TextIO

from forge_syncd.text import printable

STYLES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "cyan": "36",
    "bold red": "1;31",
}


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and not when NO_COLOR is set (no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class Out:
    """The two streams of one command, and how to write on them. `utc`: times in UTC
    instead of the local zone (`--utc`)."""

    def __init__(
        self, utc: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.utc = utc
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.tty = self.stdout.isatty()
        self.color = wants_color(self.stdout)
        self.err_color = wants_color(self.stderr)

    @property
    def width(self) -> int | None:
        """The terminal's width (COLUMNS when set), None when stdout is not a terminal."""
        return shutil.get_terminal_size().columns if self.tty else None

    def line(self, text: str = "") -> None:
        """Write one line of our own text (already safe) to stdout."""
        self.stdout.write(text + "\n")

    def say(self, text: str) -> None:
        """Write one line that may hold remote text to stdout, control characters escaped."""
        self.line(printable(text))

    def paint(self, text: str, style: str | None) -> str:
        """Return `text` in `style` (STYLES) on a colour terminal, else as it is."""
        if not style or not self.color or not text:
            return text
        return f"\x1b[{STYLES[style]}m{text}\x1b[0m"

    def error(self, text: str, hints: list[str] | tuple[str, ...] = ()) -> None:
        """Write "forge-syncctl: TEXT" (escaped) to stderr, then each hint indented."""
        head = f"forge-syncctl: {printable(text, keep_newlines=True)}"
        if self.err_color:
            head = f"\x1b[{STYLES['red']}m{head}\x1b[0m"
        self.stderr.write(head + "\n")
        for hint in hints:
            self.stderr.write(f"  {printable(hint)}\n")
        self.stderr.flush()

    def note(self, text: str) -> None:
        """Write a remark about the answer (not data) to stderr: "forge-syncctl: TEXT"."""
        self.stderr.write(f"forge-syncctl: {printable(text)}\n")
        self.stderr.flush()

    def json(self, value: object) -> None:
        """Write `value` as indented JSON (a path that is not UTF-8 as its `\\udcXX`
        escape)."""
        from forge_syncd.control.protocol import json_text

        self.line(json_text(value, indent=2))
