"""What forge-syncctl's commands share on screen: sizes, lines of daemon data, the lines
of finished runs, progress bars fed by a `watch` stream."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

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
from rich.text import Text

from forge_syncd.control.client import CallFailed, ControlClient, DaemonUnreachable
from forge_syncd.logs import printable


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def say(console: Console, text: str) -> None:
    """Print one line of text that may hold daemon or remote data: no markup, no emoji
    codes, control characters escaped."""
    console.print(Text(printable(text)), soft_wrap=True)


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


class Bars:
    """Progress bars fed by a `watch` stream on a second connection."""

    def __init__(self, path: Path, console: Console, names: list[str]) -> None:
        self.path = path
        self.names = names
        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[files]}", markup=False),
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
                description=printable(f"{name} {progress['job']}"),
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
