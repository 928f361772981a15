"""`forge-syncctl`: ask the running daemon what it does, and tell it what to do."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from forge_syncd.cli import addctl
from forge_syncd.cli.show import Bars, human_bytes, run_line, say
from forge_syncd.config.summary import NO_CONTAINERS
from forge_syncd.control.client import CallFailed, ControlClient, DaemonUnreachable
from forge_syncd.control.protocol import json_text
from forge_syncd.drainreport import report_lines
from forge_syncd.logs import printable

DEFAULT_SOCKET = Path("/run/forge-sync/control.sock")
# 3: no daemon answers on the socket, or it is busy (every control connection in use, or
# no answer within the timeout); the message says which. An operation's own timeout (a
# catalog database too slow for `find`) is a failed operation: 1.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
USAGE_CODES = {"not_found", "bad_params", "unknown_method", "bad_request", "exists"}


def socket_path(args: argparse.Namespace) -> Path:
    """--socket, else $FORGE_SYNC_SOCKET, else the config's control.socket, else default."""
    if args.socket:
        return Path(args.socket)
    if os.environ.get("FORGE_SYNC_SOCKET"):
        return Path(os.environ["FORGE_SYNC_SOCKET"])
    config = args.config or os.environ.get("FORGE_SYNC_CONFIG") or "/etc/forge-sync.yaml"
    try:
        # Only this one key is needed: do not demand the daemon's secrets to be readable.
        document = yaml.safe_load(Path(config).read_text())
        return Path(document["control"]["socket"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return DEFAULT_SOCKET


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="forge-syncctl", description="Control forge-syncd.")
    where = top.add_mutually_exclusive_group()
    where.add_argument("--socket", help="control socket path")
    where.add_argument("--config", help="read control.socket from this config")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="one row a container")
    status.add_argument("--json", action="store_true")
    sync = commands.add_parser("sync", help="run a sync now")
    sync.add_argument("names", nargs="*", metavar="NAME")
    sync.add_argument("--wait", action="store_true", help="show progress, exit with the result")
    cleanup = commands.add_parser("cleanup", help="run a cleanup now")
    cleanup.add_argument("names", nargs="*", metavar="NAME")
    cleanup.add_argument("--dry-run", action="store_true", help="print what would be deleted")
    cleanup.add_argument("--wait", action="store_true")
    cleanup.add_argument(
        "--force",
        action="store_true",
        help="with NAME: clean up even a container whose config has cleanup off",
    )
    commands.add_parser("watch", help="live progress of running jobs (Ctrl-C ends)")
    for name, text in (
        ("pause", "stop scheduling"),
        ("resume", "schedule again"),
        ("cancel", "abort the running job"),
    ):
        command = commands.add_parser(name, help=f"{text} a container")
        command.add_argument("name", metavar="NAME")
    drain = commands.add_parser(
        "drain", help="before destroying a box: sync, verify every file by sha256, report"
    )
    drain.add_argument("name", metavar="NAME")
    drain.add_argument("--purge", action="store_true", help="then delete the verified files")
    drain.add_argument("--json", action="store_true")
    commands.add_parser("reload", help="re-read the config (same as SIGHUP)")
    history = commands.add_parser("history", help="past runs, newest first")
    history.add_argument("name", nargs="?", metavar="NAME")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    find = commands.add_parser(
        "find", help="search the catalog (needs a catalog or postgres sink), newest first"
    )
    find.add_argument("--prompt", metavar="TEXT", help="every word in the prompt")
    find.add_argument("--model", metavar="M", help="model name contains M (any case)")
    find.add_argument("--seed", type=int, metavar="N", help="exactly this seed")
    find.add_argument("--lora", metavar="L", help="a LoRA name contains L (any case)")
    find.add_argument("--container", metavar="C", help="only this container")
    find.add_argument("--since", metavar="DUR", help="modified in the last DUR (7d, 12h, 600)")
    find.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (50)")
    find.add_argument("--json", action="store_true")
    addctl.add_arguments(commands)
    return top


def ago(stamp: str | None) -> str:
    if not stamp:
        return "-"
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 0:
        return "in " + ago_text(-seconds)
    return ago_text(seconds) + " ago"


def ago_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cell(value: object, width: int | None = None) -> Text:
    """Given a value for a table cell (daemon data, often remote text), return it as plain
    text: never read as Rich markup, control characters escaped, cut to `width` chars."""
    text = printable(str(value))
    return Text(text[:width] if width is not None else text)


def show_status(console: Console, result: dict[str, Any]) -> None:
    """Given a `status` result, print the daemon line and one row a container."""
    daemon = result["daemon"]
    say(
        console,
        f"forge-syncd {daemon['version']} (pid {daemon['pid']}), up since {daemon['started_at']}",
    )
    if not result["containers"]:
        say(console, NO_CONTAINERS)  # a fresh install: healthy, and the next step
        return
    table = Table(box=None, header_style="bold")
    for column in (
        "CONTAINER",
        "STATE",
        "WATCH",
        "LAST SYNC",
        "RESULT",
        "FILES",
        "BYTES",
        "NEXT SYNC",
        "ERROR",
    ):
        table.add_column(column)
    for c in result["containers"]:
        last = c["last_sync"] or {}
        progress = c["progress"]
        state = c["state"]
        if progress:
            state += f" {progress['files_done']}/{progress['files_total']}"
        table.add_row(
            cell(c["name"]),
            cell(state),
            cell(c.get("watch", "-")),
            cell(ago(last.get("finished_at"))),
            cell(last.get("result", "-")),
            cell(last.get("files", "-")),
            cell(human_bytes(last["bytes"]) if last else "-"),
            cell(ago(c["next_sync_at"])),
            cell(last.get("error") or "", width=60),
        )
    console.print(table)


def show_runs(console: Console, runs: list[dict[str, Any]]) -> bool:
    """Print one line per finished run (and a dry run's decisions); return True if all ok."""
    for run in runs:
        say(console, run_line(run))
        for decision in run.get("decisions", []) if run.get("dry_run") else []:
            what = "delete" if decision["action"] == "purge" else f"keep ({decision['reason']})"
            say(console, f"  {what:<26} {human_bytes(decision['size']):>10}  {decision['path']}")
    return all(run["result"] != "failure" for run in runs)


def run_jobs(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    job = args.command
    params: dict[str, Any] = {"containers": args.names}
    wait = args.wait or getattr(args, "dry_run", False)
    if getattr(args, "dry_run", False):
        params["dry_run"] = True
    if not wait:
        queued = client.call(job, params)["queued"]
        say(console, f"{job} queued: {', '.join(queued) or '(no containers)'}")
        return EXIT_OK
    params["wait"] = True
    with Bars(client.path, console, args.names):
        result = client.call(job, params, timeout=None)
    return EXIT_OK if show_runs(console, result["runs"]) else EXIT_FAILED


def cleanup_jobs(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    """`cleanup [NAME]... [--dry-run] [--wait] [--force]`: without NAME only the containers
    whose config enables cleanup (the others are named as skipped); a NAME whose cleanup is
    off needs --force (the daemon refuses with `cleanup_disabled`, exit 1), or --dry-run."""
    params: dict[str, Any] = {"containers": args.names}
    if args.force:
        params["force"] = True
    if args.dry_run:
        params["dry_run"] = True
    if not (args.wait or args.dry_run):
        result = client.call("cleanup", params)
        show_skipped(console, result)
        if result["queued"]:
            say(console, f"cleanup queued: {', '.join(result['queued'])}")
        return EXIT_OK
    params["wait"] = True
    with Bars(client.path, console, args.names):
        result = client.call("cleanup", params, timeout=None)
    show_skipped(console, result)
    return EXIT_OK if show_runs(console, result["runs"]) else EXIT_FAILED


def show_skipped(console: Console, result: dict[str, Any]) -> None:
    """Say which containers a `cleanup` without NAME left out and why, or that none has
    cleanup enabled."""
    skipped = result.get("skipped") or []
    if skipped and not result.get("runs") and not result.get("queued"):
        names = ", ".join(s["container"] for s in skipped)
        say(
            console,
            f"no container has cleanup enabled ({names}: cleanup off in the config);"
            " name one with --force to clean it up anyway",
        )
        return
    for entry in skipped:
        say(console, f"{entry['container']}: skipped, {entry['reason']} in its config")


def drain(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    """Exit 0 only when every remote file in scope has a verified library copy (and, with
    --purge, the purge did not fail)."""
    params = {"container": args.name, "purge": args.purge}
    if args.json:
        result = client.call("drain", params, timeout=None)
    else:
        with Bars(client.path, console, [args.name]):
            result = client.call("drain", params, timeout=None)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for line in report_lines(result):
            say(console, line)
    purge_failed = result["purged"] is not None and result["purged"]["result"] == "failure"
    return EXIT_OK if result["safe"] and not purge_failed else EXIT_FAILED


def watch(client: ControlClient, console: Console) -> int:
    """Live bars until Ctrl-C. SIGINT only shuts the stream's socket down (a handler, not a
    KeyboardInterrupt raised wherever the main thread is, e.g. inside rich's rendering), so
    the loop ends and the bars stop cleanly, every time."""
    bars = Bars(client.path, console, [])

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        client.interrupt()

    previous = signal.signal(signal.SIGINT, interrupted)
    bars.progress.start()
    try:
        for event in client.stream("watch"):
            bars.update(event)
    except (OSError, ValueError, DaemonUnreachable):
        pass  # the socket was shut down under the read
    finally:
        signal.signal(signal.SIGINT, previous)
        bars.progress.stop()
    return EXIT_OK


def run_command(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    handlers: dict[str, Callable[[], int]] = {
        "status": lambda: status(client, args, console),
        "sync": lambda: run_jobs(client, args, console),
        "cleanup": lambda: cleanup_jobs(client, args, console),
        "watch": lambda: watch(client, console),
        "reload": lambda: reload(client, console),
        "history": lambda: history(client, args, console),
        "drain": lambda: drain(client, args, console),
        "find": lambda: find(client, args, console),
        "add": lambda: addctl.add(client, args, console),
        "remove": lambda: addctl.remove(client, args, console),
    }
    if args.command in handlers:
        return handlers[args.command]()
    result = client.call(args.command, {"container": args.name})
    if args.command == "cancel":
        running = result["cancelled"]
        message = f"cancelling its {running}" if running else "nothing running"
        say(console, f"{result['container']}: {message}")
    else:
        say(console, f"{result['container']}: {result['state']}")
    return EXIT_OK


def status(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    result = client.call("status")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show_status(console, result)
    return EXIT_OK


def reload(client: ControlClient, console: Console) -> int:
    result = client.call("reload")
    if not result["reloaded"]:
        say(console, "reload refused, the old config keeps running:")
        for line in str(result["error"]).splitlines():
            say(console, line)
        return EXIT_FAILED
    changes = (f"{key} {', '.join(result[key]) or '-'}" for key in ("added", "removed", "changed"))
    say(console, "reloaded: " + ", ".join(changes))
    return EXIT_OK


def history(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.name:
        params["container"] = args.name
    runs = client.call("history", params)["runs"]
    if args.json:
        print(json.dumps({"runs": runs}, indent=2))
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for column in ("STARTED", "CONTAINER", "JOB", "RESULT", "FILES", "BYTES", "ERROR"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            cell(run["started_at"][:19].replace("T", " ")),
            cell(run["container"]),
            cell(run["job"]),
            cell(run["result"] or "running"),
            cell(run["files"]),
            cell(human_bytes(run["bytes"])),
            cell(run["error"] or "", width=60),
        )
    console.print(table)
    return EXIT_OK


def find(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    """Print the catalog's matches, one line a file, newest first (`--json`: the result).
    No catalog configured is a failed operation (exit 1), not a usage error."""
    params = {
        key: getattr(args, key)
        for key in ("prompt", "model", "seed", "lora", "container", "since")
        if getattr(args, key) is not None
    }
    params["limit"] = args.limit
    try:
        result = client.call("find", params)
    except CallFailed as exc:
        if exc.code != "not_found":
            raise
        print(f"forge-syncctl: {printable(exc.message)}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json_text(result, indent=2))  # a path that is not UTF-8: `\udcXX` escapes
        return EXIT_OK
    files = result["files"]
    for line in found_lines(files):
        say(console, line)
    if not files:
        say(console, "no matching files")
    if result.get("truncated"):
        say(console, f"(only the newest {len(files)} fit in one answer: narrow the search)")
    return EXIT_OK


def found_lines(files: list[dict[str, Any]]) -> list[str]:
    """Given `find` rows, return one line each: mtime (UTC), container, path (an earlier
    version marked), model, seed, the start of the prompt; columns aligned."""
    table = []
    for row in files:
        path = row["path"] + (" (earlier version)" if row.get("versioned_at") else "")
        prompt = " ".join(str(row.get("prompt") or "").split())
        excerpt = prompt[:77] + "..." if len(prompt) > 80 else prompt
        table.append(
            [
                str(row["mtime"])[:19].replace("T", " "),
                row["container"],
                path,
                row.get("model") or "-",
                "-" if row.get("seed") is None else str(row["seed"]),
                excerpt,
            ]
        )
    # Widths of the printable form (what `say` shows), so escapes do not break columns.
    widths = [max((len(printable(r[i])) for r in table), default=0) for i in range(5)]
    return [
        "  ".join(printable(cell).ljust(w) for cell, w in zip(row, widths, strict=False))
        + "  "
        + row[5]
        for row in table
    ]


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if args.command == "cleanup" and args.force and not args.names:
        top.error("cleanup --force needs the NAME of each container to clean up anyway")
    # Daemon data holds remote text: no highlighting, no `:emoji:` codes (markup is off
    # wherever such text is printed).
    console = Console(highlight=False, emoji=False)
    path = socket_path(args)
    try:
        with ControlClient(path) as client:
            client.call("hello")
            return run_command(client, args, console)
    except DaemonUnreachable as exc:
        print(f"forge-syncctl: {printable(str(exc))}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CallFailed as exc:
        print(f"forge-syncctl: {printable(exc.message)}", file=sys.stderr)
        return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
