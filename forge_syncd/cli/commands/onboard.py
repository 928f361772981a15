"""`forge-syncctl add NAME TARGET` and `forge-syncctl remove NAME`: the operator's side.

The daemon does the work (it alone holds the key); each `add` call answers the next step.
This side shows what the daemon found, asks the person (the host key, the folder when
several fit) or takes the flags' answer, and calls again. Every call uses a connection of
its own: a person may take longer to answer than the socket lets a connection idle.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import count_size, size
from forge_syncd.cli.parser import add_json
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient
from forge_syncd.text import printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# A call logs in and probes the box: the connect timeout, plus the probe's own limit.
ADD_CALL_TIMEOUT_S = 180.0
POLL_S = 0.5

KEY_PAGES = (
    "On RunPod, paste it into the SSH Public Keys field of your account settings; on vast.ai,"
    " into the SSH Keys section of the Keys page of the console. Both give it only to pods and"
    " instances started afterwards: on a box already running, append it to"
    " ~/.ssh/authorized_keys yourself (vast.ai can also add it to a running instance from its"
    " SSH button)."
)


def say(out: Out, text: str) -> None:
    out.line(printable(text, keep_newlines=True))


def complain(text: str) -> None:
    print(f"forge-syncctl: {printable(text, keep_newlines=True)}", file=sys.stderr)


def call(path: Path, method: str, params: dict[str, Any], timeout: float | None) -> Any:
    with ControlClient(path) as client:
        return client.call(method, params, timeout=timeout)


def add(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """Run `add` step by step; return the exit code (0 added and, unless --no-wait, its
    first sync succeeded; 1 failed or refused; 2 a question with no terminal to ask)."""
    params: dict[str, Any] = {"name": args.name, "target": args.target, "kind": args.kind}
    if args.root:
        params["root"] = args.root
    if args.fingerprint:
        params["fingerprint"] = args.fingerprint
    if args.docker_host:
        params["docker_host"] = args.docker_host
    since = utc_stamp()  # the runs of an add start after the call that added it
    result = client.call("add", params, timeout=ADD_CALL_TIMEOUT_S)
    while True:
        step = result["step"]
        if step == "added":
            break
        if step == "login_refused":
            show_login_refused(out, result)
            return EXIT_FAILED
        if step == "confirm_host_key":
            code = confirm_host_key(out, result, args)
            if code is not None:
                return code
            params["fingerprint"] = result["host_key"]["fingerprint"]
        elif step == "choose":
            show_found(out, result)
            picked = choose_folder(out, result["candidates"])
            if picked is None:
                return EXIT_USAGE
            params["kind"], params["root"] = picked["kind"], picked["root"]
        else:
            complain(f"the daemon answered an unknown step {step!r}")
            return EXIT_FAILED
        since = utc_stamp()
        result = call(client.path, "add", params, ADD_CALL_TIMEOUT_S)
    show_added(out, result)
    if args.no_wait:
        say(out, "first sync started; see it with `forge-syncctl status` or `watch`")
        return EXIT_OK
    return wait_first_sync(client.path, out, args.name, since)


def where(result: dict[str, Any]) -> str:
    host = result["host"]
    host = f"[{host}]" if ":" in host else host
    return f"{result['user']}@{host}" + (f":{result['port']}" if result["port"] != 22 else "")


def confirm_host_key(out: Out, result: dict[str, Any], args: argparse.Namespace) -> int | None:
    """Show the box's host key and get it confirmed: --yes, or a yes on the terminal.
    Return None when confirmed, else the exit code."""
    key = result["host_key"]
    say(out, f"{where(result)} presents this host key:")
    say(out, f"  {key['type']} {key['fingerprint']}")
    for old in result.get("previous") or []:
        say(
            out,
            f"WARNING: {result['known_hosts']} holds another key for this address"
            f" ({old['type']} {old['fingerprint']}): the box was replaced (rented addresses are"
            " reused), or something is in between. Trusting the new key replaces it.",
        )
    check = "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"
    if args.yes:
        say(out, "trusted (--yes)")
        return None
    if not sys.stdin.isatty():
        complain(
            "no terminal to confirm the host key: compare it with the box's own"
            f" (`{check}` on the box) and pass --fingerprint {key['fingerprint']}, or --yes;"
            " nothing written"
        )
        return EXIT_USAGE
    say(out, f"Compare it with the box's own (`{check}` on the box).")
    if not ask_yes(out, "Trust it and add the box? [y/N] "):
        complain("host key not trusted; nothing written")
        return EXIT_FAILED
    return None


def ask_yes(out: Out, question: str) -> bool:
    try:
        out.stdout.flush()
        answer = input(question)
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def show_login_refused(out: Out, result: dict[str, Any]) -> None:
    say(
        out,
        f"The box refused forge-syncd's key ({result['identity_file']}) for {where(result)}.",
    )
    say(out, f"Put this line into ~{result['user']}/.ssh/authorized_keys on the box:")
    say(out, "")
    say(out, result["public_key"])
    say(out, "")
    say(out, KEY_PAGES)
    say(out, "Nothing was written; run the same `forge-syncctl add` once the key is in place.")


def found_line(found: dict[str, Any]) -> str:
    capped = found["capped"]
    count = found["files"]
    files = f"{count}{'+' if capped else ''} {'file' if count == 1 and not capped else 'files'}"
    via = "" if found["via"] == "folder" else f"  ({found['via']}: --output-directory)"
    return f"{found['app']:<12} {found['root']}  {files}, {size(found['bytes'])}{via}"


def show_found(out: Out, result: dict[str, Any]) -> None:
    found = result.get("found") or []
    if result.get("transport") == "local":  # the folder was named, not looked for
        for note in result.get("notes") or []:
            say(out, f"  note: {note}")
        return
    place = "in the container" if result.get("transport") == "docker" else "on the box"
    say(out, f"Found {place}:" if found else f"Found {place}: no known output folder")
    for number, entry in enumerate(found, start=1):
        say(out, f"  {number}. {found_line(entry)}")
    for note in result.get("notes") or []:
        say(out, f"  note: {note}")


def choose_folder(out: Out, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Ask which of several folders to sync; None (after saying why) without a terminal
    or an answer."""
    example = candidates[0]
    if not sys.stdin.isatty():
        complain(
            "several output folders fit and there is no terminal to ask which: pass --kind"
            f" and --root (e.g. --kind {example['kind']} --root {example['root']}); nothing"
            " written"
        )
        return None
    for number, entry in enumerate(candidates, start=1):
        say(out, f"  [{number}] {entry['app']} {entry['root']}")
    try:
        out.stdout.flush()
        answer = input(f"Which one to sync? [1-{len(candidates)}] ").strip()
    except EOFError:
        answer = ""
    if answer.isdigit() and 1 <= int(answer) <= len(candidates):
        return candidates[int(answer) - 1]
    complain("no folder chosen; nothing written")
    return None


def show_added(out: Out, result: dict[str, Any]) -> None:
    show_found(out, result)
    key = result.get("host_key") or {}
    if result.get("learned"):
        shown = f"{key.get('type')} {key.get('fingerprint')}"
        say(out, f"host key {shown} added to {result['known_hosts']}")
    say(
        out,
        f"added {result['container']}: kind {result['kind']}, root {result['root']}"
        f" ({result['file']})",
    )


def utc_stamp() -> str:
    """Return now as the runs' ISO 8601 UTC (the daemon's clock is this machine's), a
    second early for the rounding of the two."""
    moment = datetime.now(UTC) - timedelta(seconds=1)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def wait_first_sync(path: Path, out: Out, name: str, since: str) -> int:
    """Show the container's progress until its first sync (started at or after `since`)
    ends; exit with its result (130 when Ctrl-C stops the waiting: the sync goes on)."""
    from forge_syncd.cli.bars import Bars  # threads and Rich: only when it waits
    from forge_syncd.cli.summary import run_line

    try:
        with Bars(path, out, [name], "sync", since):
            last = _first_sync(path, name, since)
    except KeyboardInterrupt:
        out.note(
            f"stopped waiting; {name}'s first sync goes on in the daemon (follow it:"
            " forge-syncctl watch)"
        )
        return EXIT_INTERRUPTED
    if last is None:
        complain(f"{name} is no longer configured")
        return EXIT_FAILED
    started = datetime.fromisoformat(last["started_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(last["finished_at"].replace("Z", "+00:00"))
    run = {**last, "container": name, "job": "sync"}
    run["duration_s"] = (finished - started).total_seconds()
    say(out, run_line(run))
    return EXIT_FAILED if last["result"] == "failure" else EXIT_OK


def _first_sync(path: Path, name: str, since: str) -> dict[str, Any] | None:
    """Poll `status` until the container has a finished sync; return its first one (None
    when the container went away). Status shows the latest run, and in live mode the
    watcher's reconciling run may already have followed the first: the first comes from
    `history` (`_oldest_sync_since_added`)."""
    while True:
        containers = call(path, "status", {}, 30.0)["containers"]
        mine = [c for c in containers if c["name"] == name]
        if not mine:
            return None
        if mine[0]["last_sync"] is not None:
            return _oldest_sync_since_added(path, name, since) or dict(mine[0]["last_sync"])
        time.sleep(POLL_S)


def _oldest_sync_since_added(path: Path, name: str, since: str) -> dict[str, Any] | None:
    """Return the container's first finished sync since it was added: the one the daemon
    recorded as started by `add` (its trigger), else the oldest that started at or after
    `since` (ISO 8601 UTC, when `add` answered "added"; a name added before keeps its
    older runs; a daemon without triggers)."""
    runs = call(path, "history", {"container": name, "limit": 50}, 30.0)["runs"]
    mine = [
        run
        for run in runs
        if run["job"] == "sync" and run["finished_at"] is not None and run["started_at"] >= since
    ]
    by_add = [run for run in mine if run.get("trigger") == "add"]
    chosen = by_add or mine
    return dict(min(chosen, key=lambda run: str(run["started_at"]))) if chosen else None


def remove(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    result = client.call("remove", {"name": args.name, "force": args.force}, timeout=120.0)
    if args.json:
        out.json(result)
        return EXIT_OK
    at_risk = result.get("remote_only") or {}
    say(out, f"removed {result['container']}: {result['file']} deleted")
    if at_risk.get("files"):
        on_box = count_size(at_risk["files"], at_risk["bytes"])
        say(out, f"not in the library (--force): {on_box} on the box")
    say(out, "its library folder and history stay")
    return EXIT_OK


def add_arguments(add: argparse.ArgumentParser) -> None:
    add.add_argument("name", metavar="NAME", help="the container's name (also its library folder)")
    add.add_argument(
        "target",
        metavar="TARGET",
        help="ssh://[user@]host[:port], docker://CONTAINER or local:/PATH",
    )
    add.add_argument(
        "--kind",
        choices=("auto", "forge", "comfyui", "generic"),
        default="auto",
        help="what runs there (default auto: detect it)",
    )
    add.add_argument(
        "--root", metavar="PATH", help="the output folder on the box or in the container"
    )
    add.add_argument(
        "--fingerprint", metavar="SHA256:…", help="the host key you expect (ssh-keygen -lf)"
    )
    add.add_argument(
        "--docker-host",
        metavar="HOST",
        help="docker:// only: the engine, unix:///path or ssh://[user@]host[:port]"
        " (default unix:///run/docker.sock)",
    )
    add.add_argument("--yes", action="store_true", help="trust the host key shown (scripts)")
    add.add_argument(
        "--no-wait",
        action="store_true",
        help="return once added, without waiting for its first sync",
    )


def remove_arguments(remove: argparse.ArgumentParser) -> None:
    remove.add_argument("name", metavar="NAME", help="the container's name")
    remove.add_argument(
        "--force", action="store_true", help="even while the box holds media not yet in the library"
    )
    add_json(remove)


COMMANDS = (
    Command(
        "add",
        "add",
        "add a box: confirm its host key, log in, detect its front end, first sync",
        "Add a box through the daemon: show its host key to confirm, test the login, detect"
        " Forge or ComfyUI and its output folder, write <state_dir>/containers.d/NAME.yaml,"
        " apply it, and show the first sync.",
        add_arguments,
        add,
    ),
    Command(
        "remove",
        "remove",
        "stop syncing a box `add` added (its library and history stay)",
        "Remove a box `add` added: its drop-in is deleted and the config reloaded; its"
        " library folder and history stay. Refused while the box holds media not yet in"
        " the library, unless --force.",
        remove_arguments,
        remove,
    ),
)
