"""The daemon's running containers, by name: started, stopped and replaced as the config
and the `discover:` sources change, checked for media at risk, and wound down at stop.

A removed container's runner is retired (its running job cancelled, live mode stopped) and
its connection closed once that job ends; its library and history stay. A changed one is
replaced by a runner that waits for the old one's job and carries its results over.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from forge_syncd.config import ContainerConfig
from forge_syncd.events.at_risk import AtRiskWatch
from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library import modes
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.metrics import Metrics
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.service.scheduler import JobScheduler


class Containers:
    """The running containers (`runners`, by name). `first_triggers`: containers whose first
    sync counts as started by something else than the schedule (`add`), by name, until the
    reload that adds them. `at_risk`: media at risk as events (None: no sink asks)."""

    def __init__(
        self,
        media_root: bytes,
        manifest: Manifest,
        scheduler: JobScheduler,
        metrics: Metrics,
        at_risk: AtRiskWatch | None,
        stopping: threading.Event,
    ) -> None:
        self.media_root = media_root
        self.manifest = manifest
        self.scheduler = scheduler
        self.metrics = metrics
        self.at_risk = at_risk
        self.stopping = stopping
        self.runners: dict[str, ContainerRunner] = {}
        self.first_triggers: dict[str, str] = {}

    def apply(self, wanted: list[ContainerConfig]) -> dict[str, list[str]]:
        """Make the running containers `wanted`: start the new, stop the gone (their library
        and history stay), replace the changed after their running job. Return the names
        `added`, `removed` and `changed`."""
        old = {name: runner.config for name, runner in self.runners.items()}
        fresh = {c.name: c for c in wanted}
        added = [n for n in fresh if n not in old]
        removed = [n for n in old if n not in fresh]
        changed = [n for n in fresh if n in old and fresh[n] != old[n]]
        for name in fresh.keys() & old.keys():
            if fresh[name] == old[name] and fresh[name].source != old[name].source:
                self.runners[name].config = fresh[name]  # moved to another file, unchanged
        for name in removed:
            self.remove(name)
        for name in changed:
            if limits_only(old[name], fresh[name]):
                self.runners[name].retune(fresh[name])  # its running transfer goes on
            else:
                self.add(fresh[name], self.remove(name))
        for name in added:
            self.add(fresh[name])
        return {"added": added, "removed": removed, "changed": changed}

    def add(self, container: ContainerConfig, predecessor: ContainerRunner | None = None) -> None:
        """Start `container` (replacing `predecessor`, if given): its folder, its schedule,
        its live mode."""
        runner = ContainerRunner(
            container, self.media_root, self.manifest, self._finished, predecessor
        )
        modes.make_folders(self.media_root, os.path.join(self.media_root, container.name.encode()))
        runner.first_trigger = self.first_triggers.pop(container.name, None)
        self.runners[container.name] = runner
        self.scheduler.add(runner)
        runner.start_watch(lambda: self._reconcile(runner))

    def _reconcile(self, runner: ContainerRunner) -> None:
        """Queue a full sync of `runner`'s container (its live watcher was established)."""
        if not runner.retired and not self.stopping.is_set():
            self.scheduler.run_now(runner, Job.SYNC, trigger="live")

    def remove(self, name: str) -> ContainerRunner:
        """Stop container `name`: unschedule and retire it, close its connection once its
        running job ends. Return its runner."""
        runner = self.runners.pop(name)
        self.scheduler.remove(name)
        runner.retire()
        threading.Thread(target=self._close_when_idle, args=(runner,), daemon=True).start()
        return runner

    @staticmethod
    def _close_when_idle(runner: ContainerRunner) -> None:
        while runner.running:
            time.sleep(0.1)
        runner.close()

    def _finished(self, runner: ContainerRunner, job: Job, outcome: RunOutcome) -> None:
        self.metrics.run_finished(runner.name, job, outcome)
        self.check_at_risk(runner)
        if job == Job.SYNC and outcome.result == RunResult.FAILURE and not runner.retired:
            self.scheduler.back_off(runner)

    def check_at_risk(self, runner: ContainerRunner | None = None) -> None:
        """Tell the media-at-risk watch what `runner`'s container (None: each container)
        has at risk now, and whether a sync of it ever succeeded."""
        if self.at_risk is None:
            return
        for each in [runner] if runner is not None else list(self.runners.values()):
            if not each.retired:
                known = each.results.last_success_ts.get(Job.SYNC) is not None
                self.at_risk.check(each.name, each.remote_only.summary(), known)

    def busy(self) -> bool:
        """Whether a job of some container runs."""
        return any(runner.running for runner in self.runners.values())

    def stop_live(self) -> None:
        """Stop every live watcher: no new live runs; a running one ends as any job."""
        for runner in self.runners.values():
            if runner.live is not None:
                runner.live.stop()

    def wind_down(self, timeout_s: float) -> None:
        """Let running jobs finish for half of `timeout_s`, then cancel them (transfers stop
        between chunks), and in its last 2 s close their connections (breaking a blocked
        remote read); then retire and close every runner."""
        deadline = time.monotonic() + timeout_s
        grace = time.monotonic() + timeout_s / 2
        while time.monotonic() < deadline and self.busy():
            if time.monotonic() > grace:
                for runner in self.runners.values():
                    runner.retire()
            if time.monotonic() > deadline - 2:
                for runner in self.runners.values():
                    runner.close()
            time.sleep(0.1)
        for runner in self.runners.values():
            runner.retire()
            runner.close()


def limits_only(old: ContainerConfig, new: ContainerConfig) -> bool:
    """Whether `new` differs from `old` in its bandwidth limit alone (`sync.bwlimit`,
    `sync.auto_delay`): a change its running transfer takes at its next read."""
    same_limits = dataclasses.replace(
        new.sync, bwlimit=old.sync.bwlimit, auto_delay_s=old.sync.auto_delay_s
    )
    return dataclasses.replace(new, sync=same_limits) == old
