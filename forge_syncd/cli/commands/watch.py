"""`forge-syncctl watch [NAME]... [--json]`: live progress until Ctrl-C.

On a terminal: a bar a running job (a finished one ends at its final figures, marked
done) and, under them, what the daemon waits for while nothing runs ("waiting for a run:
2 containers idle, next sync in 4 min"). Piped: a line as each job starts and ends.
`--json`: the daemon's events as JSON lines.
"""

from __future__ import annotations

import argparse
import json
from types import FrameType
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import ago, count_size, plural
from forge_syncd.cli.parser import NAMES
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient, DaemonUnreachable


def waiting_for(event: dict[str, Any]) -> str:
    """What an idle daemon waits for: "waiting for a run: 2 containers idle, next sync in
    4 min" (a paused or unreachable one is counted apart); "" while a job runs."""
    containers = event.get("containers") or []
    if not containers:
        return "waiting for a run: no containers configured"
    if any(c.get("progress") for c in containers):
        return ""
    states: dict[str, int] = {}
    for c in containers:
        states[c["state"]] = states.get(c["state"], 0) + 1
    counts = ", ".join(
        f"{plural(n, 'container')} {state}" if i == 0 else f"{n} {state}"
        for i, (state, n) in enumerate(sorted(states.items(), key=lambda s: -s[1]))
    )
    upcoming = sorted(str(c["next_sync_at"]) for c in containers if c.get("next_sync_at"))
    nxt = f", next sync {ago(upcoming[0])}" if upcoming else ""
    watching = sum(1 for c in containers if c.get("watch_status") == "watching")
    live = f", {watching} watching for new files" if watching else ""
    return f"waiting for a run: {counts}{live}{nxt}"


def watch(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    """Until Ctrl-C. SIGINT only shuts the stream's socket down (a handler, not a
    KeyboardInterrupt raised wherever the main thread is, e.g. inside Rich's rendering), so
    the loop ends and the bars stop cleanly, every time."""
    import signal

    from forge_syncd.cli.bars import Bars  # threads and Rich: only when watching

    def interrupted(_signum: int, _frame: FrameType | None) -> None:
        client.interrupt()

    previous = signal.signal(signal.SIGINT, interrupted)
    lines = Lines(out)
    bars = Bars(client.path, out, args.names, footer=waiting_for, feed=False)
    try:
        with bars if out.tty and not args.json else _nothing():
            for event in client.stream("watch", {"containers": args.names}):
                if args.json:
                    out.line(json.dumps(event))
                    out.stdout.flush()
                elif out.tty:
                    bars.update(event)
                else:
                    lines.update(event)
    except (OSError, ValueError, DaemonUnreachable):
        pass  # the socket was shut down under the read
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


class Lines:
    """Piped `watch`: "forge-a sync started: 72 files, 148.0 MiB" and "forge-a sync done:
    72 files, 148.0 MiB" (a job too short to be seen running gets its "done" line only);
    what the daemon waits for, once it is idle. Jobs with nothing to do are not shown."""

    def __init__(self, out: Out) -> None:
        self.out = out
        self.started: dict[str, str] = {}  # the run each container was seen running
        self.ended: dict[str, str] = {}  # the last finished run seen, by container
        self.idle = False

    def update(self, event: dict[str, Any]) -> None:
        for c in event.get("containers", []):
            self._one(c)
        idle = not any(c.get("progress") for c in event.get("containers", []))
        if idle and not self.idle:  # at the start, and each time the last job ends
            self.out.say(waiting_for(event))
        self.idle = idle
        self.out.stdout.flush()

    def _one(self, c: dict[str, Any]) -> None:
        from forge_syncd.cli.bars import run_key

        name, progress, final = c["name"], c.get("progress"), c.get("finished")
        if final is not None:
            key = run_key(final)
            first = name not in self.ended
            if not first and self.ended[name] != key and has_work(final):
                done = count_size(final["files_done"], final["bytes_done"])
                self.out.say(f"{name} {final['job']} done: {done}")
                self.idle = False  # say again what it waits for
            self.ended[name] = key
        else:
            self.ended.setdefault(name, "")
        if progress and has_work(progress) and self.started.get(name) != run_key(progress):
            self.started[name] = run_key(progress)
            total = count_size(progress["files_total"], progress["bytes_total"])
            self.out.say(f"{name} {progress['job']} started: {total}")


def has_work(progress: dict[str, Any]) -> bool:
    return bool(progress["files_total"] or progress["bytes_total"])


def add_arguments(watch: argparse.ArgumentParser) -> None:
    watch.add_argument("names", nargs="*", metavar="NAME", help=NAMES)
    watch.add_argument(
        "--json", action="store_true", help="print the daemon's progress events as JSON lines"
    )


COMMANDS = (
    Command(
        "watch",
        "watch",
        "show live progress of running jobs until Ctrl-C",
        "Show a progress bar for every running sync, cleanup or drain, and what the daemon"
        " waits for while none runs, until Ctrl-C. Piped, print a line as each job starts"
        " and ends.",
        add_arguments,
        watch,
    ),
)
