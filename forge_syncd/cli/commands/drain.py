"""`forge-syncctl drain NAME [--purge] [--json]`: is it safe to destroy the box?"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import now_stamp
from forge_syncd.cli.parser import add_json
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient

if TYPE_CHECKING:
    from forge_syncd.control.messages import DrainReportJson

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def drain(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """Exit 0 only when every remote file in scope has a verified library copy (and, with
    --purge, the purge did not fail); 130 when Ctrl-C stops the waiting (the drain goes on
    in the daemon)."""
    from forge_syncd.cli.bars import Bars  # threads and Rich: only when it runs
    from forge_syncd.cli.drainreport import drain_exit_ok, report_lines

    params = {"container": args.name, "purge": args.purge}
    since = now_stamp()
    result: DrainReportJson
    try:
        if args.json:
            result = client.call("drain", params, timeout=None)
        else:
            with Bars(client.path, out, [args.name], since=since):
                result = client.call("drain", params, timeout=None)
    except KeyboardInterrupt:
        out.stdout.flush()
        out.note(
            f"stopped waiting; the drain of {args.name} goes on in the daemon (its sync and"
            f" purge show in forge-syncctl history {args.name}; stop it: forge-syncctl cancel"
            f" {args.name})"
        )
        return EXIT_INTERRUPTED
    if args.json:
        out.json(result)
    else:
        for line in report_lines(result):
            out.say(line)
    return EXIT_OK if drain_exit_ok(result) else EXIT_FAILED


def add_arguments(drain: argparse.ArgumentParser) -> None:
    drain.add_argument("name", metavar="NAME", help="the container's name")
    drain.add_argument(
        "--purge",
        action="store_true",
        help="then delete every verified file from the container (preserve is honoured,"
        " older_than is not)",
    )
    add_json(drain)


COMMANDS = (
    Command(
        "drain",
        "drain",
        "before destroying a box: sync, verify every file by sha256, report",
        "Before you destroy a rented box: a final sync, then the sha256 of every file on the"
        " container and of its library copy. Exit 0 and `safe to destroy` only when every"
        " file has a verified copy; else exit 1, each file that is not safe, why, and what to"
        " do about it.",
        add_arguments,
        drain,
    ),
)
