"""`forge-syncctl history [NAME] [--limit N] [--json]`: past runs, newest first, from the
daemon or, when it is not running, from the manifest itself."""

from __future__ import annotations

import argparse
from typing import Any

from forge_syncd.cli import connect
from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import duration, local_time, parse_time, size
from forge_syncd.cli.parser import add_json, add_limit
from forge_syncd.cli.table import Cell, Column, print_table
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient

COLUMNS = [
    Column("STARTED"),
    Column("CONTAINER"),
    Column("JOB"),
    Column("TRIGGER"),
    Column("RESULT"),
    Column("FILES", right=True),
    Column("SIZE", right=True),
    Column("DURATION", right=True),
    Column("ERROR", cut=True),
]
RESULT_STYLES = {"failure": "red", "cancelled": "yellow", "running": "cyan"}


def history(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.name:
        params["container"] = args.name
    return show(out, client.call("history", params)["runs"], args.json)


def offline(args: argparse.Namespace, out: Out, why: str) -> int:
    """No daemon: read the manifest in state_dir (say so on stderr); exit 0, 2 for an
    unknown NAME, 3 if the manifest cannot be read either."""
    from forge_syncd.cli.offline import StateUnreadable, history_runs, not_running  # SQLite

    state_dir, source = connect.state_dir(args)
    path = state_dir / "manifest.sqlite"
    try:
        runs, remark = history_runs(path, args.name, args.limit)
    except LookupError as exc:
        out.error(str(exc.args[0]))
        return 2
    except StateUnreadable as exc:
        out.error(
            why, [f"and the history cannot be read without it: {exc}", f"state_dir: {source}"]
        )
        return 3
    out.note(f"forge-syncd is not running ({not_running(why)}); from {path}{remark}")
    return show(out, runs, args.json)


def show(out: Out, runs: list[dict[str, Any]], as_json: bool) -> int:
    if as_json:
        out.json({"runs": runs})
        return 0
    if not runs:
        out.line("no runs yet")
        return 0
    print_table(out, COLUMNS, [row(out, run) for run in runs])
    return 0


def row(out: Out, run: dict[str, Any]) -> list[Cell | str]:
    result = run.get("result") or "running"
    return [
        local_time(run["started_at"], out.utc, seconds=True),
        Cell(run["container"]),
        run["job"],
        trigger(run),
        Cell(result, RESULT_STYLES.get(result)),
        str(run["files"]),
        size(run["bytes"]),
        took(run),
        Cell(run.get("error") or "", "red"),
    ]


def trigger(run: dict[str, Any]) -> str:
    """What started the run: scheduled, manual, live, drain, add, once; `dry-run` for a
    cleanup that deleted nothing by design; "-" for a run recorded before triggers were."""
    if run.get("dry_run"):
        return "dry-run"
    return str(run.get("trigger") or "-")


def took(run: dict[str, Any]) -> str:
    if not run.get("finished_at"):
        return "-"
    seconds = (parse_time(run["finished_at"]) - parse_time(run["started_at"])).total_seconds()
    return duration(seconds)


def add_arguments(history: argparse.ArgumentParser) -> None:
    history.add_argument("name", nargs="?", metavar="NAME", help="only this container's runs")
    add_limit(history, 20, "runs")
    add_json(history)


COMMANDS = (
    Command(
        "history",
        "history",
        "list past runs, newest first",
        "List past runs, newest first: when each started, the container, the job, what"
        " started it (TRIGGER: scheduled, manual, live, dry-run, drain, add, once), its"
        " result, files, size, duration and error. Works without the daemon: then it reads"
        " the manifest in state_dir.",
        add_arguments,
        history,
        offline,
    ),
)
