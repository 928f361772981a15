"""forge-syncctl's commands: one module here each (or a few akin), found by walking this
folder. A module declares what it adds in `COMMANDS`: each command's name, the control
method it calls (`control/methods.py`), its help, its options and the function that runs
it. `--help` lists the commands in the order of that list of methods.

Only the chosen command runs, but every module is imported to build the parser: a module
imports at its top only what forge-syncctl has loaded anyway (argparse, the client, `Out`,
`cli/parser.py`), and the rest (progress bars, SQLite, tables, times) in the functions that
use it, so `status` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable, Iterable
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from forge_syncd import __version__
from forge_syncd.cli.parser import EXIT_CODES, Parser, add_where, command
from forge_syncd.control.methods import LIST

if TYPE_CHECKING:
    from forge_syncd.cli.term import Out
    from forge_syncd.control.client import ControlClient


class Command(NamedTuple):
    """One forge-syncctl command: its name; the control method it calls (after `hello`);
    its one-line summary (in the command list) and description (in its --help);
    `add_arguments(parser)`, which adds its options; `run(client, args, out) -> exit code`;
    and, for a command that can answer from the state files when no daemon does,
    `offline(args, out, why) -> exit code`."""

    name: str
    method: str
    summary: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[ControlClient, argparse.Namespace, Out], int]
    offline: Callable[[argparse.Namespace, Out, str], int] | None = None


@cache
def every() -> dict[str, Command]:
    """Import each module of this folder; return the commands they declare, by name, in
    the order of control/methods.py's list. Raise RuntimeError for a command whose method
    is not in that list, or a name declared twice."""
    declared: list[Command] = []
    for module in modules():
        declared.extend(importlib.import_module(f"{__name__}.{module}").COMMANDS)
    return in_list_order(declared)


def modules() -> list[str]:
    """The names of the modules in this folder (not this one), in name order."""
    names = (name.removesuffix(".py") for name in os.listdir(__path__[0]))
    return sorted(n for n in names if n.isidentifier() and not n.startswith("_"))


def in_list_order(declared: Iterable[Command]) -> dict[str, Command]:
    """Given the commands declared, return them by name, ordered as their methods are in
    control/methods.py's list. Raise RuntimeError naming a command whose method is not
    there, or a command name declared twice."""
    place = {method.name: i for i, method in enumerate(LIST)}
    found: dict[str, Command] = {}
    for each in declared:
        if each.method not in place:
            raise RuntimeError(
                f"forge-syncctl {each.name} calls {each.method!r}, which is not a control"
                " method of control/methods.py"
            )
        if each.name in found:
            raise RuntimeError(f"forge-syncctl {each.name} is declared twice")
        found[each.name] = each
    return dict(sorted(found.items(), key=lambda item: place[item[1].method]))


def add_all(commands: Any) -> None:
    """Add every command to the subparsers `commands`."""
    for each in every().values():
        each.add_arguments(command(commands, each.name, each.summary, each.description))


def parser() -> Parser:
    """Return forge-syncctl's parser."""
    top = Parser(
        prog="forge-syncctl",
        description="Ask forge-syncd what it is doing, and tell it what to do, over its control"
        " socket. `forge-syncctl COMMAND --help` explains a command.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"forge-syncctl {__version__}")
    add_where(top, top=True)
    commands = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands", parser_class=Parser
    )
    add_all(commands)
    return top
