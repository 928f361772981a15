"""Progress bars on a terminal, fed by a `watch` stream on a connection of their own (Rich
is loaded here only, when bars are drawn).

A bar belongs to one run (its `run_id`): when that run's work ends, the bar is set to the
run's final figures and marked `done`; a later run of the same container gets a new bar.
A bar is drawn only for a job with work to show, and (for `--wait`) only for a job of the
kind waited for that started after the request was sent: never a frozen bar of an earlier
run. Piped, nothing is drawn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_syncd.cli.format import duration, rate, size, size_pair
from forge_syncd.cli.term import Out
from forge_syncd.control.client import CallFailed, ControlClient, DaemonUnreachable
from forge_syncd.text import plural, printable

Footer = Callable[[dict[str, Any]], str]
SETTLE_S = 1.5  # the daemon sends an event every 0.5 s


@dataclass
class Bar:
    task: Any  # rich's TaskID
    key: str  # the run it shows
    done: bool = False


def detail(progress: dict[str, Any], done: bool = False) -> str:
    """ "12/72 files  69.8/148.0 MiB  20.0 MiB/s  4s left" (a done bar: its totals)."""
    files = f"{progress['files_done']}/{plural(progress['files_total'], 'file')}"
    if done:
        return f"{files}  {size(progress['bytes_done'])}  done"
    text = f"{files}  {size_pair(progress['bytes_done'], progress['bytes_total'])}"
    if progress.get("rate_bps"):
        text += f"  {rate(progress['rate_bps'])}"
    if progress.get("eta_s") is not None:
        text += f"  {duration(progress['eta_s'])} left"
    return text


def run_key(progress: dict[str, Any]) -> str:
    return str(progress.get("run_id") or progress.get("started_at") or progress.get("job"))


class Bars:
    """Bars for the containers `names` (all when empty); `job`: only jobs of that kind;
    `since` (ISO 8601 UTC): only jobs started then or later; `footer(event)`: a line under
    the bars (what an idle `watch` waits for)."""

    def __init__(
        self,
        path: Path,
        out: Out,
        names: list[str],
        job: str | None = None,
        since: str | None = None,
        footer: Footer | None = None,
        feed: bool = True,
    ) -> None:
        """`feed`: read a `watch` stream of its own (else the caller calls `update`)."""
        self.path, self.out, self.names, self.feed = path, out, names, feed
        self.job, self.since, self.footer = job, since, footer
        self.bars: dict[str, Bar] = {}
        self.client: ControlClient | None = None
        self.progress: Any = None
        self.settled = threading.Event()  # every bar shows its run's end

    def __enter__(self) -> Bars:
        if self.out.tty:
            self.progress = make_progress(self.out)
            self.progress.start()
            if self.feed:
                threading.Thread(target=self.run, daemon=True).start()
        return self

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        if self.progress is not None and self.bars and exc_type is None:
            # The run is over; the next event (within SETTLE_S) brings its final figures.
            self.settled.wait(SETTLE_S)
        if self.client is not None:
            self.client.close()
        if self.progress is not None:
            self.progress.stop()

    def run(self) -> None:
        try:
            self.client = ControlClient(self.path)
            for event in self.client.stream("watch", {"containers": self.names}):
                self.update(event)
        except (OSError, DaemonUnreachable, CallFailed, ValueError):
            return

    def update(self, event: dict[str, Any]) -> None:
        """Apply one `watch` event to the bars (and the footer)."""
        for container in event.get("containers", []):
            self._one(container)
        if self.bars and all(bar.done for bar in self.bars.values()):
            self.settled.set()
        if self.footer is not None and self.progress is not None:
            self.progress.footer = printable(self.footer(event))
            self.progress.refresh()

    def _wanted(self, progress: dict[str, Any]) -> bool:
        if self.job is not None and progress.get("job") != self.job:
            return False
        started = progress.get("started_at")
        return self.since is None or started is None or str(started) >= self.since

    def _one(self, container: dict[str, Any]) -> None:
        name = container["name"]
        progress = container.get("progress")
        bar = self.bars.get(name)
        if progress and self._wanted(progress):
            key = run_key(progress)
            if bar is not None and bar.key != key:
                if not bar.done:
                    self._finish(name, bar, container.get("finished"))
                self.progress.remove_task(bar.task)  # the container's earlier run
                del self.bars[name]
                bar = None
            if bar is None and (progress["files_total"] or progress["bytes_total"]):
                task = self.progress.add_task(f"{name} {progress['job']}", detail="", total=None)
                bar = self.bars[name] = Bar(task, key)
            if bar is not None:
                self._show(bar, progress)
        elif bar is not None and not bar.done:
            self._finish(name, bar, container.get("finished"))

    def _show(self, bar: Bar, progress: dict[str, Any], done: bool = False) -> None:
        total = progress["bytes_total"] or None
        self.progress.update(
            bar.task,
            completed=progress["bytes_done"] if not done or total is None else total,
            total=total,
            detail=detail(progress, done),
        )

    def _finish(self, name: str, bar: Bar, final: dict[str, Any] | None) -> None:
        """The bar's run has ended: show its final figures (when the daemon has them for
        that run), marked done."""
        bar.done = True
        if final is not None and run_key(final) == bar.key:
            self._show(bar, final, done=True)
        else:
            self.progress.update(bar.task, detail="done")


def make_progress(out: Out) -> Any:
    """Return a Rich Progress writing to `out` (no markup from remote text, no colour when
    NO_COLOR), with a `footer` line under its bars."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.text import Text

    class WithFooter(Progress):
        footer = ""

        def get_renderables(self) -> Any:
            yield self.make_tasks_table(self.tasks)
            if self.footer:
                yield Text(self.footer)

    console = Console(file=out.stdout, highlight=False, emoji=False, no_color=not out.color)
    return WithFooter(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.fields[detail]}", markup=False),
        console=console,
        transient=False,
    )
