"""forge-syncctl: parse the command line, reach the daemon, run the command, map what
happened to an exit code (0 done, 1 failed, 2 bad usage, 3 no daemon, 130 interrupted).

Each command is declared by its module in `cli/commands/` (its options, the control method
it calls, the function that runs it); those modules load their heavy helpers only when
they run: `status` loads no progress-bar or logging library, so it answers fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from forge_syncd.cli import commands
from forge_syncd.cli.connect import ProtocolMismatch, greet, unreachable_hints, where
from forge_syncd.cli.term import Out
from forge_syncd.control.client import CallFailed, ControlClient, DaemonBusy, DaemonUnreachable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Daemon error codes that mean the command was wrong (exit 2), not that it failed (1).
USAGE_CODES = {"not_found", "bad_params", "unknown_method", "bad_request", "exists"}


def check(top: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what argparse cannot see (exit 2, naming the options)."""
    if args.socket and args.config:
        top.error("--socket and --config are two ways to name the socket: give one")
    if args.command == "cleanup" and args.force and not args.names:
        top.error("cleanup --force needs the NAME of each container to clean up anyway")


def main(argv: list[str] | None = None) -> int:
    top = commands.parser()
    args = top.parse_args(argv)
    check(top, args)
    out = Out(utc=args.utc)
    try:
        code = run(args, out)
        out.stdout.flush()
        return code
    except BrokenPipeError:
        # `forge-syncctl history | head`: the reader has what it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run(args: argparse.Namespace, out: Out) -> int:
    """Reach the daemon and run the command; return the exit code."""
    spot = where(args)
    try:
        client = greet(spot.path)
    except DaemonBusy as exc:
        out.error(str(exc), unreachable_hints(exc, spot))
        return EXIT_UNREACHABLE
    except DaemonUnreachable as exc:
        offline = commands.every()[args.command].offline
        if offline is not None:  # `history`, `find`: answer from the state files
            return offline(args, out, str(exc))
        out.error(str(exc), unreachable_hints(exc, spot))
        return EXIT_UNREACHABLE
    except ProtocolMismatch as exc:
        out.error(str(exc))
        return EXIT_FAILED
    except CallFailed as exc:
        return failed(out, exc)
    with client:
        return run_command(client, args, out)


def run_command(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    try:
        return commands.every()[args.command].run(client, args, out)
    except DaemonUnreachable as exc:
        out.error(str(exc))
        return EXIT_UNREACHABLE
    except CallFailed as exc:
        return failed(out, exc)


def failed(out: Out, exc: CallFailed) -> int:
    """Say what the daemon refused; 2 for a wrong command, else 1."""
    out.error(exc.message)
    return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILED
