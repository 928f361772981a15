"""`forge-syncctl`: ask the running daemon what it does, and tell it what to do."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from forge_syncd.control.client import CallFailed, ControlClient, DaemonUnreachable

DEFAULT_SOCKET = Path("/run/forge-sync/control.sock")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
USAGE_CODES = {"not_found", "bad_params", "unknown_method", "bad_request"}


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
    commands.add_parser("watch", help="live progress of running jobs (Ctrl-C ends)")
    for name, text in (
        ("pause", "stop scheduling"),
        ("resume", "schedule again"),
        ("cancel", "abort the running job"),
    ):
        command = commands.add_parser(name, help=f"{text} a container")
        command.add_argument("name", metavar="NAME")
    commands.add_parser("reload", help="re-read the config (same as SIGHUP)")
    history = commands.add_parser("history", help="past runs, newest first")
    history.add_argument("name", nargs="?", metavar="NAME")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--json", action="store_true")
    return top


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


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


def show_status(console: Console, result: dict[str, Any]) -> None:
    daemon = result["daemon"]
    console.print(
        f"forge-syncd {daemon['version']} (pid {daemon['pid']}), up since {daemon['started_at']}"
    )
    table = Table(box=None, header_style="bold")
    for column in (
        "CONTAINER",
        "STATE",
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
            c["name"],
            state,
            ago(last.get("finished_at")),
            last.get("result", "-"),
            str(last.get("files", "-")),
            human_bytes(last["bytes"]) if last else "-",
            ago(c["next_sync_at"]),
            (last.get("error") or "")[:60],
        )
    console.print(table)


def printable(text: str) -> str:
    """Escape control characters (a newline in a file name must not break a listing)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def run_line(run: dict[str, Any]) -> str:
    if run.get("dry_run"):
        purge = [d for d in run["decisions"] if d["action"] == "purge"]
        size = human_bytes(sum(d["size"] for d in purge))
        return f"{run['container']}: cleanup dry run, {len(purge)} files ({size}) would be deleted"
    verb = "purged" if run["job"] == "cleanup" else "synced"
    line = (
        f"{run['container']}: {run['job']} {run['result']}, {run['files']} files "
        f"{verb}, {human_bytes(run['bytes'])} in {run.get('duration_s', 0):.2f} s"
    )
    return line + (f" ({run['error']})" if run.get("error") else "")


def show_runs(console: Console, runs: list[dict[str, Any]]) -> bool:
    """Print one line per finished run (and a dry run's decisions); return True if all ok."""
    for run in runs:
        console.print(printable(run_line(run)), markup=False, soft_wrap=True)
        for decision in run.get("decisions", []) if run.get("dry_run") else []:
            what = "delete" if decision["action"] == "purge" else f"keep ({decision['reason']})"
            console.print(
                f"  {what:<26} {human_bytes(decision['size']):>10}  {printable(decision['path'])}",
                markup=False,
                soft_wrap=True,
            )
    return all(run["result"] != "failure" for run in runs)


class Bars:
    """Progress bars fed by a `watch` stream on a second connection."""

    def __init__(self, path: Path, console: Console, names: list[str]) -> None:
        self.path = path
        self.names = names
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.client: ControlClient | None = None

    def run(self) -> None:
        try:
            self.client = ControlClient(self.path)
            for event in self.client.stream("watch", {"containers": self.names}):
                self.update(event)
        except (OSError, DaemonUnreachable, CallFailed, ValueError):
            return

    def update(self, event: dict[str, Any]) -> None:
        for container in event.get("containers", []):
            progress = container.get("progress")
            if progress is None:
                continue
            name = container["name"]
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, files="", total=None)
            self.progress.update(
                self.tasks[name],
                description=f"{name} {progress['job']}",
                completed=progress["bytes_done"],
                total=progress["bytes_total"] or None,
                files=f"{progress['files_done']}/{progress['files_total']} files",
            )

    def __enter__(self) -> Bars:
        self.progress.start()
        threading.Thread(target=self.run, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.client is not None:
            self.client.close()
        self.progress.stop()


def run_jobs(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    job = args.command
    params: dict[str, Any] = {"containers": args.names}
    wait = args.wait or getattr(args, "dry_run", False)
    if getattr(args, "dry_run", False):
        params["dry_run"] = True
    if not wait:
        queued = client.call(job, params)["queued"]
        console.print(f"{job} queued: {', '.join(queued) or '(no containers)'}")
        return EXIT_OK
    params["wait"] = True
    with Bars(client.path, console, args.names):
        result = client.call(job, params, timeout=None)
    return EXIT_OK if show_runs(console, result["runs"]) else EXIT_FAILED


def watch(client: ControlClient, console: Console) -> int:
    bars = Bars(client.path, console, [])
    bars.progress.start()
    try:
        for event in client.stream("watch"):
            bars.update(event)
    except KeyboardInterrupt:
        pass
    finally:
        bars.progress.stop()
    return EXIT_OK


def run_command(client: ControlClient, args: argparse.Namespace, console: Console) -> int:
    handlers: dict[str, Callable[[], int]] = {
        "status": lambda: status(client, args, console),
        "sync": lambda: run_jobs(client, args, console),
        "cleanup": lambda: run_jobs(client, args, console),
        "watch": lambda: watch(client, console),
        "reload": lambda: reload(client, console),
        "history": lambda: history(client, args, console),
    }
    if args.command in handlers:
        return handlers[args.command]()
    result = client.call(args.command, {"container": args.name})
    if args.command == "cancel":
        running = result["cancelled"]
        message = f"cancelling its {running}" if running else "nothing running"
        console.print(f"{result['container']}: {message}")
    else:
        console.print(f"{result['container']}: {result['state']}")
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
        console.print(
            f"reload refused, the old config keeps running:\n{result['error']}", markup=False
        )
        return EXIT_FAILED
    console.print(
        "reloaded: "
        + ", ".join(
            f"{key} {', '.join(result[key]) or '-'}" for key in ("added", "removed", "changed")
        )
    )
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
            run["started_at"][:19].replace("T", " "),
            run["container"],
            run["job"],
            run["result"] or "running",
            str(run["files"]),
            human_bytes(run["bytes"]),
            (run["error"] or "")[:60],
        )
    console.print(table)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console(highlight=False)
    path = socket_path(args)
    try:
        with ControlClient(path) as client:
            client.call("hello")
            return run_command(client, args, console)
    except DaemonUnreachable as exc:
        print(f"forge-syncctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except CallFailed as exc:
        print(f"forge-syncctl: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
