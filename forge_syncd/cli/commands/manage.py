"""`forge-syncctl pause|resume|cancel NAME` and `reload`: change what the daemon does, and
say what it does now."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import ago
from forge_syncd.cli.parser import add_json
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient

EXIT_OK, EXIT_FAILED = 0, 1
Run = Callable[[ControlClient, argparse.Namespace, Out], int]
WATCH_WORDS = {
    "watching": "watching for changes",
    "polling": "polling (live watcher down)",
    "offline": "unreachable",
}


def now_text(result: dict[str, Any]) -> str:
    """What the container does now: "syncing", or "idle, watching for changes, next sync
    in 4 min" (an older daemon: its state only)."""
    running = {"sync": "syncing", "cleanup": "cleaning"}.get(str(result.get("running")))
    parts = [running or result["state"]]
    watch = WATCH_WORDS.get(str(result.get("watch_status")))
    if watch and watch not in parts[0]:
        parts.append(watch)
    if result.get("next_sync_at"):
        parts.append(f"next sync {ago(result['next_sync_at'])}")
    return ", ".join(parts)


def on_container(method: str, text: Callable[[dict[str, Any]], str]) -> Run:
    """The command that calls `method` for the container NAME and prints the answer: as
    JSON with --json, else the line `text` makes of it; exit 0."""

    def run(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
        result = client.call(method, {"container": args.name})
        if args.json:
            out.json(result)
        else:
            out.say(text(result))
        return EXIT_OK

    return run


def paused(result: dict[str, Any]) -> str:
    name = result["container"]
    running = result.get("running")
    finishing = f"; its running {running} finishes first" if running else ""
    return f"{name}: paused{finishing} (forge-syncctl resume {name} schedules it again)"


def resumed(result: dict[str, Any]) -> str:
    return f"{result['container']}: resumed; {now_text(result)}"


def cancelled(result: dict[str, Any]) -> str:
    running = result["cancelled"]
    message = f"cancelling its {running}" if running else "nothing running"
    return f"{result['container']}: {message}"


def reload(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    result = client.call("reload")
    if args.json:
        out.json(result)
        return EXIT_OK if result["reloaded"] else EXIT_FAILED
    if not result["reloaded"]:
        out.line("reload refused, the old config keeps running:")
        for line in str(result["error"]).splitlines():
            out.say(line)
        return EXIT_FAILED
    changes = (f"{key} {', '.join(result[key]) or '-'}" for key in ("added", "removed", "changed"))
    out.say("reloaded: " + ", ".join(changes))
    return EXIT_OK


def one_container(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="NAME", help="the container's name")
    add_json(sub)


def json_only(sub: argparse.ArgumentParser) -> None:
    add_json(sub)


COMMANDS = (
    Command(
        "pause",
        "pause",
        "stop scheduling a container",
        "Stop scheduling the container's syncs and cleanups (a running job finishes)"
        " until `resume`.",
        one_container,
        on_container("pause", paused),
    ),
    Command(
        "resume",
        "resume",
        "schedule a paused container again",
        "Schedule the container again.",
        one_container,
        on_container("resume", resumed),
    ),
    Command(
        "cancel",
        "cancel",
        "abort a container's running job",
        "Abort the container's running job: its run ends `cancelled`; nothing partial is kept.",
        one_container,
        on_container("cancel", cancelled),
    ),
    Command(
        "reload",
        "reload",
        "re-read the config (as SIGHUP does)",
        "Re-read the config and its drop-ins: added, removed and changed containers take"
        " effect; a config with errors is refused (they are printed) and the old one keeps"
        " running.",
        json_only,
        reload,
    ),
)
