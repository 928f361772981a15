"""forge-syncctl's command line, the parts every command shares: the parser class, the
options, the exit codes, how a command is added (`cli/commands/` builds the parser).

Options that say where the daemon is (`--socket`, `--config`) and `--utc` are accepted
before or after the command. A mistyped command or option gets a "did you mean".
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, NoReturn

from forge_syncd.text import closest

EXIT_CODES = """\
exit codes:
  0    success
  1    the operation failed: a failed run, a refused reload, a box not safe to destroy,
       a daemon that speaks another protocol version
  2    bad usage: an unknown command, option or container
  3    forge-syncd is not running, not reachable, or busy (history and find then read
       the state files instead, and exit 0)
  130  interrupted (Ctrl-C) while waiting: the run goes on in the daemon
"""
NAMES = "a container's name, as `status` shows it (default: every container)"
JSON = "print the result as JSON (for scripts) instead of text"


def positive(low: int, high: int) -> Any:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]+", text.strip()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {text!r}"
            )
        return int(text)

    return parse


def add_json(command: argparse.ArgumentParser) -> None:
    """--json: the answer as JSON instead of text."""
    command.add_argument("--json", action="store_true", help=JSON)


def add_limit(command: argparse.ArgumentParser, default: int, what: str) -> None:
    """--limit N: at most N `what` (1 to 1000)."""
    command.add_argument(
        "--limit",
        type=positive(1, 1000),
        default=default,
        metavar="N",
        help=f"at most N {what} (1-1000, default {default})",
    )


class Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped command, choice or option."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            near = closest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
            return f"\n(did you mean {near!r}?)" if near else ""
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if unknown and unknown.group(1).startswith("-"):
            near = closest(unknown.group(1), every_option(self))
            return f"\n(did you mean {near}?)" if near else ""
        return ""


def every_option(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of `parser` and its subcommands."""
    found: list[str] = []
    for action in parser._actions:  # argparse keeps them there; no public way
        found.extend(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(every_option(sub))
    return sorted(set(found))


def add_where(parser: argparse.ArgumentParser, top: bool) -> None:
    """--socket, --config and --utc; on a command, defaults left to the top level's."""
    default: Any = None if top else argparse.SUPPRESS
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--socket",
        metavar="PATH",
        default=default,
        help="the daemon's control socket (default: $FORGE_SYNC_SOCKET, else control.socket"
        " in the config, else /run/forge-sync/control.sock)",
    )
    where.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="read control.socket (and state_dir, for history and find without a daemon)"
        " from this config (default: $FORGE_SYNC_CONFIG, else /etc/forge-sync.yaml)",
    )
    parser.add_argument(
        "--utc",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show times in UTC instead of the local time zone",
    )


def command(commands: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """Add a command with its one-line summary (in the command list), its description and
    the exit codes (in its --help)."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_where(sub, top=False)
    return sub
