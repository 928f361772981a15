"""`forge-syncctl status [NAME]... [--json]`: the daemon, one row a container, the sinks.

The columns: CONTAINER, STATE (with a running job's files), WATCH (what live mode does:
`watching`, `polling`, `paused`, `offline`, `off`), LAST SYNC and its RESULT, LAST COPY (the
last sync that copied files: the live mode's no-op runs come after it), AT RISK (media only
the container holds: files, size, age of the oldest), NEXT SYNC, NEXT CLEANUP, ERROR.
"""

from __future__ import annotations

import argparse
from typing import Any

from forge_syncd.cli.commands import Command
from forge_syncd.cli.format import ago, count_size, duration, plural, rate, relative, size, when
from forge_syncd.cli.parser import add_json
from forge_syncd.cli.table import Cell, Column, natural_width, print_table
from forge_syncd.cli.term import Out
from forge_syncd.control.client import ControlClient
from forge_syncd.text import NO_CONTAINERS, no_such, printable

COLUMNS = [
    Column("CONTAINER"),
    Column("STATE"),
    Column("WATCH"),
    Column("LAST SYNC"),
    Column("RESULT"),
    Column("LAST COPY"),
    Column("AT RISK"),
    Column("NEXT SYNC"),
    Column("NEXT CLEANUP"),
    Column("ERROR", cut=True),
]
STATE_STYLES = {"unreachable": "red", "error": "red", "paused": "yellow", "syncing": "cyan"}
RESULT_STYLES = {"failure": "red", "cancelled": "yellow"}
WATCH_STYLES = {"offline": "red", "paused": "yellow", "polling": "yellow"}
AT_RISK_ALERT_S = 30 * 60  # the shipped alert: remote-only media older than 30 min


class UnknownName(Exception):
    """A NAME given that the daemon does not have (exit 2)."""


def pick(containers: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    """Return the containers named (all without names), in name order. Raise UnknownName
    (its message lists the names there are, with a did-you-mean)."""
    have = {c["name"] for c in containers}
    for name in names:
        if name not in have:
            raise UnknownName(no_such("container", name, have))
    chosen = [c for c in containers if not names or c["name"] in names]
    return sorted(chosen, key=lambda c: str(c["name"]))


def status(client: ControlClient, args: argparse.Namespace, out: Out) -> int:
    result = client.call("status")
    try:
        containers = pick(result["containers"], args.names)
    except UnknownName as exc:
        out.error(str(exc))
        return 2
    if args.json:
        out.json({**result, "containers": containers})
        return 0
    daemon = result["daemon"]
    out.line(
        f"forge-syncd {daemon['version']} (pid {daemon['pid']}),"
        f" up since {when(daemon['started_at'], out.utc)}"
    )
    if not result["containers"]:
        out.line(NO_CONTAINERS)  # a fresh install: healthy, and the next step
        return 0
    rows = [row(c) for c in containers]
    errors = [(c["name"], error(c)) for c in containers if error(c)]
    if out.width is not None and natural_width(COLUMNS, rows) > out.width and errors:
        # A terminal too narrow for the errors: they go under the table, whole.
        print_table(out, COLUMNS[:-1], [r[:-1] for r in rows])
        for name, text in errors:
            out.line(out.paint(printable(f"{name}: {text}"), "red"))
    else:
        print_table(out, COLUMNS, rows)
    for container in containers:
        if container.get("progress"):
            out.say(running_line(container["name"], container["progress"]))
    for line in limit_lines((result.get("limits") or {}).get("bwlimit"), containers):
        out.say(line)
    if not args.names:
        for line in sink_lines(result.get("sinks") or []):
            out.say(line)
    return 0


def row(c: dict[str, Any]) -> list[Cell | str]:
    """One container's cells."""
    last = c.get("last_sync") or {}
    progress = c.get("progress")
    state = c["state"]
    shown_state = state
    if progress:
        shown_state += f" {progress['files_done']}/{progress['files_total']}"
    watch = c.get("watch_status") or c.get("watch") or "-"
    return [
        Cell(c["name"]),
        Cell(shown_state, STATE_STYLES.get(state)),
        Cell(watch, WATCH_STYLES.get(watch)),
        ago(last.get("finished_at")) if last else "never",
        Cell(last.get("result") or "-", RESULT_STYLES.get(str(last.get("result")))),
        last_copy(c.get("last_copy")),
        at_risk(c.get("remote_only")),
        next_run(c.get("next_sync_at"), state),
        next_run(c.get("next_cleanup_at"), state, unset="off"),
        Cell(error(c), "red"),
    ]


def last_copy(copy: dict[str, Any] | None) -> str:
    """ "3 min ago, 72 files, 148.0 MiB", or "-" before any sync copied a file."""
    if not copy:
        return "-"
    return f"{ago(copy.get('finished_at'))}, {count_size(copy['files'], copy['bytes'])}"


def at_risk(remote_only: dict[str, Any] | None) -> Cell:
    """ "none", or "3 files, 19.0 MiB, oldest 2 h" (red once older than the alert's 30 min)."""
    if not remote_only or not remote_only.get("files"):
        return Cell("none" if remote_only is not None else "-")
    oldest = remote_only.get("oldest_s")
    text = count_size(remote_only["files"], remote_only["bytes"])
    if oldest is not None:
        text += f", oldest {relative(oldest)}"
    return Cell(text, "red" if (oldest or 0) >= AT_RISK_ALERT_S else "yellow")


def next_run(stamp: str | None, state: str, unset: str = "-") -> str:
    if stamp:
        return ago(stamp)
    return "paused" if state == "paused" else unset


def error(c: dict[str, Any]) -> str:
    """The last sync's error, else the last cleanup's (marked), else nothing."""
    sync = (c.get("last_sync") or {}).get("error")
    if sync:
        return str(sync)
    cleanup = c.get("last_cleanup") or {}
    return f"cleanup: {cleanup['error']}" if cleanup.get("error") else ""


def running_line(name: str, progress: dict[str, Any]) -> str:
    """ "forge-a: sync 12/72 files, 69.8 MiB/148.0 MiB, 20.0 MiB/s, 4s left"."""
    line = (
        f"{name}: {progress['job']} {progress['files_done']}/"
        f"{plural(progress['files_total'], 'file')}, {size(progress['bytes_done'])}/"
        f"{size(progress['bytes_total'])}"
    )
    if progress.get("rate_bps"):
        line += f", {rate(progress['rate_bps'])}"
    if progress.get("eta_s") is not None:
        line += f", {duration(progress['eta_s'])} left"
    return line


def limit_lines(cap: dict[str, Any] | None, containers: list[dict[str, Any]]) -> list[str]:
    """The bandwidth limits, when any is set: "bwlimit: all containers 50.0 MiB/s (50MiB/s);
    forge-a 5.0 MiB/s (08:00,5MiB/s 23:00,off), receiving 4.9 MiB/s, round trip 103 ms"."""
    parts = []
    if cap and cap.get("setting"):
        parts.append(f"all containers {limit_text(cap)}")
    for c in containers:
        limit = c.get("bwlimit") or {}
        if not limit.get("setting") and limit.get("rate_bps") is None:
            continue
        text = f"{c['name']} {limit_text(limit)}"
        if limit.get("measured_bps"):
            text += f", receiving {rate(limit['measured_bps'])}"
        if limit.get("rtt_s") is not None:
            text += f", round trip {limit['rtt_s'] * 1000:.0f} ms"
        parts.append(text)
    return ["bwlimit: " + "; ".join(parts)] if parts else []


def limit_text(limit: dict[str, Any]) -> str:
    """ "5.0 MiB/s (08:00,5MiB/s 23:00,off)", "no limit now (...)", or "40.0 MiB/s" (a
    share of the global cap alone)."""
    now = "no limit now" if limit.get("rate_bps") is None else rate(limit["rate_bps"])
    setting = limit.get("setting")
    return f"{now} ({printable(str(setting))})" if setting else now


def sink_lines(sinks: list[dict[str, Any]]) -> list[str]:
    """The event sinks' backlog: "events: catalog up to date; web 12 events pending
    (failing 3 times: HTTP 500)"."""
    if not sinks:
        return []
    parts = []
    for sink in sinks:
        pending = int(sink.get("pending") or 0)
        text = f"{sink['name']} " + (
            f"{plural(pending, 'event')} pending" if pending else "up to date"
        )
        if sink.get("failures"):
            text += f" (failing {plural(sink['failures'], 'time')}: {sink.get('last_error')})"
        if isinstance(sink.get("mirror"), dict):
            text += ", " + mirror_text(sink["mirror"])
        parts.append(text)
    return ["events: " + "; ".join(parts)]


def mirror_text(mirror: dict[str, Any]) -> str:
    """A mirror sink's backlog: "mirror: 12 files (31.0 MiB) to copy, oldest 4m (failing 3
    times: ...)" or "mirror: all copied (1,204 files)"."""
    files = int(mirror.get("pending_files") or 0)
    if not files:
        return f"mirror: all copied ({plural(int(mirror.get('mirrored_files') or 0), 'file')})"
    text = (
        f"mirror: {plural(files, 'file')} ({size(int(mirror.get('pending_bytes') or 0))}) to copy"
    )
    if mirror.get("oldest_pending_s") is not None:
        text += f", oldest {duration(float(mirror['oldest_pending_s']))}"
    if mirror.get("failures"):
        error = printable(str(mirror.get("last_error")))
        text += f" (failing {plural(mirror['failures'], 'time')}: {error})"
    return text


def add_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument("names", nargs="*", metavar="NAME", help="only these containers")
    add_json(status)


COMMANDS = (
    Command(
        "status",
        "status",
        "show each container: state, live mode, last sync and copy, media at risk, next runs",
        "Show the daemon and one row a container: its state, what live mode does (WATCH),"
        " the last sync and its result, the last sync that copied files, the media only the"
        " container holds (AT RISK: files, size, age of the oldest), the next sync and"
        " cleanup, the last error; then the bandwidth limits, when set, and the event sinks'"
        " backlog. Rows are in name order.",
        add_arguments,
        status,
    ),
)
