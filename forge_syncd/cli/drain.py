"""`forge-syncctl drain NAME [--purge] [--json]`: is it safe to destroy the box?"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from forge_syncd.cli.bars import Bars
from forge_syncd.cli.drainreport import drain_exit_ok, report_lines
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient
from forge_syncd.control.messages import DrainReportJson

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def drain(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """Exit 0 only when every remote file in scope has a verified library copy (and, with
    --purge, the purge did not fail); 130 when Ctrl-C stops the waiting (the drain goes on
    in the daemon)."""
    params = {"container": args.name, "purge": args.purge}
    since = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
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
