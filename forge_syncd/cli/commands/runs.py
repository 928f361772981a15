"""`forge-syncctl sync` and `cleanup`: queue runs, or wait for them (`--wait`, and a
cleanup's `--dry-run`) and say how they ended.

Waiting shows bars of the runs waited for (not of an earlier one), then one line a run,
what a sync left on the container and why, and for a dry run the list of decisions with
its summary last. Ctrl-C stops the waiting, not the run: the message says so and how to
cancel it, and the exit code is 130.
"""

from __future__ import annotations

import argparse
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import now_stamp
from forge_syncd.cli.parser import NAMES, add_json
from forge_syncd.cli.table import Column, print_table
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
DECISION_COLUMNS = [
    Column("CONTAINER"),
    Column("ACTION"),
    Column("SIZE", right=True),
    Column("PATH"),
]


def sync(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """`sync [NAME]... [--wait] [--json]`."""
    params: dict[str, Any] = {"containers": args.names}
    if not args.wait:
        return queued(client, "sync", params, args, out)
    return wait(client, "sync", params, args, out)


def cleanup(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """`cleanup [NAME]... [--dry-run] [--wait] [--force] [--json]`: without NAME only the
    containers whose config enables cleanup (the others are named as skipped); a NAME
    whose cleanup is off needs --force (the daemon refuses with `cleanup_disabled`, exit
    1), or --dry-run."""
    params: dict[str, Any] = {"containers": args.names}
    if args.force:
        params["force"] = True
    if args.dry_run:
        params["dry_run"] = True
    if not (args.wait or args.dry_run):
        return queued(client, "cleanup", params, args, out)
    return wait(client, "cleanup", params, args, out)


def queued(
    client: ControlClient, job: str, params: dict[str, Any], args: argparse.Namespace, out: Out
) -> int:
    result = client.call(job, params)
    if args.json:
        out.json(result)
        return EXIT_OK
    show_skipped(out, result)
    if result["queued"]:
        out.say(f"{job} queued: {', '.join(result['queued'])} (follow it: forge-syncctl watch)")
    return EXIT_OK


def wait(
    client: ControlClient, job: str, params: dict[str, Any], args: argparse.Namespace, out: Out
) -> int:
    """Run and wait, with bars on a terminal; print the outcome; exit 0, 1 (a run failed)
    or 130 (Ctrl-C: the runs go on in the daemon)."""
    from forge_syncd.cli.bars import Bars  # threads and Rich: only for a run waited for

    params["wait"] = True
    since = now_stamp()
    show_bars = not args.json and not getattr(args, "dry_run", False)
    try:
        with Bars(client.path, out, args.names, job, since) if show_bars else _Nothing():
            result = client.call(job, params, timeout=None)
    except KeyboardInterrupt:
        stopped_waiting(out, job, args.names)
        return EXIT_INTERRUPTED
    runs = result["runs"]
    if args.json:
        out.json(result)
    else:
        show_skipped(out, result)
        show_runs(out, runs)
    return EXIT_OK if all(run["result"] != "failure" for run in runs) else EXIT_FAILED


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def stopped_waiting(out: Out, job: str, names: list[str]) -> None:
    """Say that the run goes on without us, and how to follow or stop it."""
    whose = ", ".join(names) if names else "every container"
    name = names[0] if len(names) == 1 else "NAME"
    out.stdout.flush()
    out.note(
        f"stopped waiting; the {job} of {whose} goes on in the daemon"
        f" (follow it: forge-syncctl watch; stop it: forge-syncctl cancel {name})"
    )


def show_runs(out: Out, runs: list[dict[str, Any]]) -> None:
    """A dry run's decisions first (a listing, totals last), then one line a run with
    what it left on the container."""
    from forge_syncd.cli.summary import decision_row, kept_text, not_copied_lines, run_line

    rows = [
        decision_row(run, d)
        for run in runs
        if run.get("dry_run")
        for d in sorted(run["decisions"], key=lambda d: str(d["path"]))
    ]
    if rows:
        print_table(out, DECISION_COLUMNS, rows)  # type: ignore[arg-type]
    for run in runs:
        out.say(run_line(run))
        for line in not_copied_lines(run):
            out.say(line)
        if run["job"] == "cleanup" and not run.get("dry_run") and run.get("kept"):
            out.say(f"  kept {kept_text(run)}")


def show_skipped(out: Out, result: dict[str, Any]) -> None:
    """Say which containers a `cleanup` without NAME left out and why, or that none has
    cleanup enabled."""
    skipped = result.get("skipped") or []
    if skipped and not result.get("runs") and not result.get("queued"):
        names = ", ".join(s["container"] for s in skipped)
        out.say(
            f"no container has cleanup enabled ({names}: cleanup off in the config);"
            " name one with --force to clean it up anyway"
        )
        return
    for entry in skipped:
        out.say(f"{entry['container']}: skipped, {entry['reason']} in its config")


def sync_arguments(sync: argparse.ArgumentParser) -> None:
    sync.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    sync.add_argument(
        "--wait",
        action="store_true",
        help="show progress until the sync ends; exit 1 if it failed (Ctrl-C stops waiting,"
        " not the sync: exit 130)",
    )
    add_json(sync)


def cleanup_arguments(cleanup: argparse.ArgumentParser) -> None:
    cleanup.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    cleanup.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted and kept; delete nothing"
    )
    cleanup.add_argument(
        "--wait", action="store_true", help="wait for the cleanup and exit with its result"
    )
    cleanup.add_argument(
        "--force",
        action="store_true",
        help="with NAME: clean up even a container whose config has cleanup off",
    )
    add_json(cleanup)


COMMANDS = (
    Command(
        "sync",
        "sync",
        "sync containers now",
        "Queue a sync of each container now (every container without NAME). With --wait,"
        " show its progress and wait for it: then say what was copied and what was left on"
        " the container and why, and exit with the result.",
        sync_arguments,
        sync,
    ),
    Command(
        "cleanup",
        "cleanup",
        "delete synced, verified media from containers now (or list what would go)",
        "Queue a cleanup now: delete from each container the files older than its"
        " cleanup.older_than that have a verified copy in the library. Without NAME only"
        " the containers whose config enables cleanup; naming one whose cleanup is off"
        " needs --force. --dry-run lists what would be deleted and what is kept, and why,"
        " and deletes nothing.",
        cleanup_arguments,
        cleanup,
    ),
)
