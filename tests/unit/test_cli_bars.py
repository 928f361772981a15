"""forge-syncctl's progress bars (`cli/bars.py`), fed `watch` events by hand: a bar a run,
never one of an earlier run, ending at the run's final figures."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from forge_syncd.cli.bars import Bars
from forge_syncd.cli.term import Out

SINCE = "2026-12-07T14:00:00.000Z"


def progress(
    run_id: str, started: str, done: int, total: int = 3, job: str = "sync"
) -> dict[str, Any]:
    return {
        "job": job,
        "files_done": done,
        "files_total": total,
        "bytes_done": done * 1024,
        "bytes_total": total * 1024,
        "rate_bps": 1024.0,
        "eta_s": 1.0,
        "run_id": run_id,
        "started_at": started,
    }


def event(running: dict[str, Any] | None, finished: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "event": "progress",
        "containers": [
            {"name": "forge-a", "state": "syncing", "progress": running, "finished": finished}
        ],
    }


def bars() -> Bars:
    out = Out(stdout=io.StringIO(), stderr=io.StringIO())
    out.tty = True
    return Bars(Path("/nowhere"), out, ["forge-a"], "sync", SINCE, feed=False)


def test_a_run_from_before_the_request_gets_no_bar_and_ours_ends_at_its_final_figures() -> None:
    """Regression (issue 25, item 4): `sync --wait` showed a frozen bar of the previous
    (live) run. A run that started before the request gets no bar; ours gets one, which
    moves, and when our run ends it shows the run's final figures, marked done."""
    shown = bars()
    with shown:
        earlier = progress("old", "2026-12-07T13:59:59.000Z", 1)
        shown.update(event(earlier, None))
        assert not shown.progress.tasks
        ours = progress("new", "2026-12-07T14:00:01.000Z", 1)
        shown.update(event(ours, progress("old", "2026-12-07T13:59:59.000Z", 3)))
        (task,) = shown.progress.tasks
        assert task.completed == 1024 and task.fields["detail"].startswith("1/3 files  1.0/3.0 KiB")
        shown.update(event(None, progress("new", "2026-12-07T14:00:01.000Z", 3)))
        (task,) = shown.progress.tasks
        assert task.completed == task.total == 3 * 1024
        assert task.fields["detail"] == "3/3 files  3.0 KiB  done"
        assert shown.settled.is_set()


def test_a_later_run_of_the_same_container_replaces_the_finished_bar() -> None:
    """In `watch`, a container's next run gets a new bar; the finished one goes."""
    shown = Bars(Path("/nowhere"), bars().out, [], feed=False)
    shown.out.tty = True
    with shown:
        shown.update(event(progress("one", SINCE, 1), None))
        shown.update(event(None, progress("one", SINCE, 3)))
        shown.update(event(progress("two", SINCE, 0, total=2), progress("one", SINCE, 3)))
        (task,) = shown.progress.tasks
        assert task.fields["detail"].startswith("0/2 files")
