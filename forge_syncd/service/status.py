"""What status shows of a container, and of the daemon on systemd's STATUS= line:
`container_status` is the `status` object of one container (its last runs kept by
`service/results.py`, its media at risk by `service/atrisk.py`), `status_line` the one
line systemd shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forge_syncd.config import NO_CONTAINERS
from forge_syncd.errorkinds import UNREACHABLE
from forge_syncd.jobs.kinds import Job, WatchState
from forge_syncd.limits.registry import LIMITS
from forge_syncd.service.results import iso_utc

if TYPE_CHECKING:
    from forge_syncd.service.runner import ContainerRunner
    from forge_syncd.service.scheduler import JobScheduler


def watch_status(runner: ContainerRunner) -> str:
    """What live mode does now, as status shows it (`watch_status`): `watching` (the
    remote watcher runs: changes sync within seconds), `polling` (live mode is on but its
    watcher is not running on a reachable container: the schedule syncs), `paused` (the
    container is paused: nothing syncs), `offline` (the container cannot be reached: no
    watcher until it answers again), `off` (live mode off)."""
    if runner.live is None:
        return WatchState.OFF
    if runner.paused:
        return "paused"
    if runner.live.state != WatchState.WATCHING and runner.last_error_kinds & UNREACHABLE:
        return "offline"
    return runner.live.state


def container_status(runner: ContainerRunner, scheduler: JobScheduler) -> dict[str, Any]:
    """One container in `status` (SPEC)."""

    def when(job: Job) -> str | None:
        moment = scheduler.next_run(runner.name, job)
        return iso_utc(moment) if moment else None

    last = runner.results.last
    return {
        "name": runner.name,
        "transport": runner.config.transport,
        "state": runner.state,
        "last_sync": r.as_dict() if (r := last.get(Job.SYNC)) else None,
        "last_cleanup": r.as_dict() if (r := last.get(Job.CLEANUP)) else None,
        "next_sync_at": when(Job.SYNC),
        "next_cleanup_at": when(Job.CLEANUP),
        "watch": runner.watch_state,
        "watch_status": watch_status(runner),
        "remote_only": runner.remote_only.summary(),
        "last_copy": runner.results.last_copy,
        "progress": runner.progress.snapshot(),
        "bwlimit": bwlimit_status(runner),
    }


def bwlimit_status(runner: ContainerRunner) -> dict[str, Any]:
    """The container's `bwlimit` in `status` (`limits/registry.py`), its limiter updated
    with its config first (a reload applies before its next transfer)."""
    sync = runner.config.sync
    LIMITS.limiter(runner.name, sync.bwlimit, sync.auto_delay_s)
    return LIMITS.container_status(runner.name)


def status_line(runners: Iterable[ContainerRunner]) -> str:
    """One line for systemd's STATUS=: container states and the most recent result,
    or, with no container, the healthy NO_CONTAINERS and how to add one."""
    runners = list(runners)
    if not runners:
        return NO_CONTAINERS
    states: dict[str, int] = {}
    for runner in runners:
        states[runner.state] = states.get(runner.state, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    plural = "" if len(runners) == 1 else "s"
    line = f"{len(runners)} container{plural}: {counts}"
    for runner in runners:
        progress = runner.progress.snapshot()
        if progress is not None:
            line += (
                f"; {runner.name} {progress['job']} {progress['files_done']}/"
                f"{progress['files_total']} files, {progress['rate_bps'] / 2**20:.1f} MiB/s"
            )
    return line
