"""APScheduler wiring: one sync and one cleanup job per container, plus a heartbeat.

Jobs coalesce and never run twice at once (`max_instances=1`); a container's failures push
its next sync back by an exponential backoff, without touching the others. The heartbeat job
runs on its own executor, so it proves the scheduler is still dispatching even while long
transfers occupy the worker threads; the daemon sends `WATCHDOG=1` only while it beats.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from forge_syncd.config.model import Schedule
from forge_syncd.jobs.kinds import Job
from forge_syncd.service.runner import ContainerRunner, backoff_s

HEARTBEAT_EXECUTOR = "heartbeat"
MAX_JITTER_S = 10.0


def make_trigger(schedule: Schedule) -> IntervalTrigger | CronTrigger:
    """Given an interval or cron schedule, return its trigger with a small jitter, so that
    containers configured alike do not all connect in the same second."""
    if schedule.cron is not None:
        trigger = CronTrigger.from_crontab(schedule.cron, timezone=UTC)
        trigger.jitter = int(MAX_JITTER_S)
        return trigger
    interval = schedule.interval_s or 300.0
    jitter = min(MAX_JITTER_S, interval / 10)
    return IntervalTrigger(seconds=interval, timezone=UTC, jitter=jitter or None)


def job_id(container: str, job: Job) -> str:
    return f"{container}:{job}"


class JobScheduler:
    """The daemon's scheduler. `add`/`remove` containers at any time (reload)."""

    def __init__(self, workers: int, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.last_beat = time.monotonic()
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(max(4, workers)),
                HEARTBEAT_EXECUTOR: ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        self._scheduler.add_job(
            self._beat,
            IntervalTrigger(seconds=self.heartbeat_s, timezone=UTC),
            id="heartbeat",
            executor=HEARTBEAT_EXECUTOR,
        )
        self._scheduler.start()

    def _beat(self) -> None:
        self.last_beat = time.monotonic()

    def healthy(self) -> bool:
        """True while the scheduler thread is alive and dispatched a heartbeat recently."""
        return (
            self._scheduler.running and time.monotonic() - self.last_beat < 2 * self.heartbeat_s + 1
        )

    def add(self, runner: ContainerRunner, first_sync_now: bool = True) -> None:
        """Schedule a container's jobs (its cleanup only when its config enables it); its
        first sync starts right away (`first_sync_now`), or is added paused."""
        config = runner.config
        first = datetime.now(UTC) + timedelta(seconds=random.uniform(0, 0.5))  # noqa: S311 - jitter
        self._schedule(
            runner, Job.SYNC, config.sync.schedule, next_run_time=first if first_sync_now else None
        )
        if config.cleanup.enabled:
            self._schedule(runner, Job.CLEANUP, config.cleanup.schedule)

    def _schedule(
        self, runner: ContainerRunner, job: Job, schedule: Schedule, **first: datetime | None
    ) -> None:
        """Schedule the container's `job`, replacing the one it had; `next_run_time` in
        `first` when given (None: paused), else as the trigger says."""
        self._scheduler.add_job(
            runner.run,
            make_trigger(schedule),
            args=(job,),
            id=job_id(runner.name, job),
            replace_existing=True,
            **first,
        )

    def _each_job(self, name: str, action: Callable[[str], Any]) -> None:
        """Apply `action` to the container's scheduled jobs (sync, and cleanup if any)."""
        for job in Job:
            if self._scheduler.get_job(job_id(name, job)) is not None:
                action(job_id(name, job))

    def remove(self, name: str) -> None:
        self._each_job(name, self._scheduler.remove_job)

    def back_off(self, runner: ContainerRunner) -> None:
        """After a failure, push the container's next sync to at least now + backoff."""
        job = self._scheduler.get_job(job_id(runner.name, Job.SYNC))
        if job is None or job.next_run_time is None:
            return
        earliest = datetime.now(UTC) + timedelta(seconds=backoff_s(runner.failures))
        if job.next_run_time < earliest:
            job.modify(next_run_time=earliest)

    def run_now(self, runner: ContainerRunner, job: Job, **kwargs: Any) -> None:
        """Queue a one-off run of `job` (an operator's request), coalesced with the next."""
        self._scheduler.add_job(
            runner.run,
            args=(job,),
            kwargs=kwargs,
            id=job_id(runner.name, job) + ":now",
            replace_existing=True,
        )

    def every(self, func: Callable[[], Any], seconds: float, name: str) -> None:
        """Run `func` now and then every `seconds` (a discovery source), replacing a job of
        that name."""
        self._scheduler.add_job(
            func,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            id=name,
            replace_existing=True,
            next_run_time=datetime.now(UTC),
        )

    def drop(self, name: str) -> None:
        """Remove the job `every` added under `name`, if any."""
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def pause(self, name: str) -> None:
        self._each_job(name, self._scheduler.pause_job)

    def resume(self, name: str) -> None:
        self._each_job(name, self._scheduler.resume_job)

    def next_run(self, name: str, job: Job) -> datetime | None:
        found = self._scheduler.get_job(job_id(name, job))
        return None if found is None else found.next_run_time

    def shutdown(self) -> None:
        """Stop dispatching; running jobs go on (the daemon waits for or cancels them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
