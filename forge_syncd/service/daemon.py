"""The daemon's lifecycle: start, the main loop, reload, graceful stop.

Signal handlers only record the signal; the main loop acts on it (as Supervisor does). The
loop also keeps systemd's STATUS= line current and sends WATCHDOG=1 only while the scheduler
proves, by its heartbeat job, that it is still dispatching.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry

from forge_syncd import __version__, logs
from forge_syncd.config import Config, ConfigError, ContainerConfig, load_config
from forge_syncd.config.model import DiscoverSource
from forge_syncd.control.server import AlreadyRunning, ControlServer
from forge_syncd.events.at_risk import CHECK_EVERY_S, AtRiskWatch, threshold_s
from forge_syncd.events.dispatcher import Dispatcher
from forge_syncd.jobs.kinds import Job, RunResult
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.library import modes
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.api import ControlApi
from forge_syncd.service.discover.sources import (
    Clash,
    DiscoveryError,
    Found,
    discover,
    kill_running_commands,
    merge,
)
from forge_syncd.service.metrics import Metrics, StateCollector, serve
from forge_syncd.service.notify import Notifier
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.service.scheduler import JobScheduler
from forge_syncd.service.status import container_status, status_line

STOP_TIMEOUT_S = 10.0
TICK_S = 0.25


class Daemon:
    """forge-syncd running in the foreground (systemd Type=notify)."""

    def __init__(
        self, config_path: Path, config: Config, registry: CollectorRegistry | None = None
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = Notifier()
        self.manifest = Manifest.open(config.state_dir)
        self.media_root = os.fsencode(config.media_root)
        self.runners: dict[str, ContainerRunner] = {}
        self.started_at = datetime.now(UTC)
        self.log = logs.get_logger()
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.stop_requested = threading.Event()
        # Set once the configured containers are added: control requests wait for it.
        self.started = threading.Event()
        watchdog = self.notifier.watchdog_interval_s
        self.watchdog_s = watchdog
        heartbeat = min(5.0, watchdog / 2) if watchdog else 5.0
        # Containers also come later (discovered, added, a reload): room for a few dozen
        # more. The pool starts its threads only as jobs need them.
        workers = 2 * len(config.containers) + 2 + 32
        self.scheduler = JobScheduler(workers=workers, heartbeat_s=heartbeat)
        self._last_ping = 0.0
        self._reload_lock = threading.RLock()
        # `add` and `remove` write or delete a drop-in and reload, one at a time.
        self.onboard_lock = threading.Lock()
        # Containers whose first sync counts as started by something else than the schedule
        # (`add`), by name, until the reload that adds them.
        self.first_triggers: dict[str, str] = {}
        # What each `discover:` source found last (by index), and what it reported then
        # (skipped entries, clashing names, warnings: logged again only when they change).
        self.discovered: dict[int, list[ContainerConfig]] = {}
        self.discovery_reports: dict[int, tuple[list[str], list[Clash], list[str]]] = {}
        self._discovery_jobs: list[str] = []
        self._discovery_round = 0
        self.control: ControlServer | None = None
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.dispatcher = Dispatcher(config.ingest, self.manifest, self._sink_error)
        self.registry.register(
            StateCollector(
                lambda: list(self.runners.values()),
                self.dispatcher.pending,
                self.dispatcher.notifications,
            )
        )
        self.metrics_server: WSGIServer | None = None
        # Media at risk as events, when a notification sink says it.
        at_risk_after = threshold_s(config.ingest)
        self.at_risk = None if at_risk_after is None else AtRiskWatch(self.manifest, at_risk_after)
        self._at_risk_checked = 0.0

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        self._install_signal_handlers()
        try:
            self.control = ControlServer(
                self.config.control.socket, ControlApi(self), group=self.config.control.group
            ).start()
            if self.config.metrics.listen is not None:
                self.metrics_server = serve(self.registry, *self.config.metrics.listen)
        except (AlreadyRunning, OSError) as exc:
            self.log.error("daemon_start_failed", error=str(exc))
            self.manifest.close()
            return 1
        self.dispatcher.start()
        self.scheduler.start()
        for container in self.config.containers:
            self._add(container)
        self._schedule_discovery()
        self.started.set()
        self.notifier.send("READY=1", f"STATUS={self.status_line()}", f"MAINPID={os.getpid()}")
        self.log.info(
            "daemon_started", version=__version__, pid=os.getpid(), containers=len(self.runners)
        )
        while not self.stop_requested.is_set():
            self._handle_signals()
            self._tick()
            time.sleep(TICK_S)
        return self._stop()

    def _install_signal_handlers(self) -> None:
        def record(signum: int, _frame: FrameType | None) -> None:
            self.signals.put(signum)  # SimpleQueue.put is safe in a signal handler

        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, record)

    def _handle_signals(self) -> None:
        while not self.signals.empty():
            signum = self.signals.get()
            if signum == signal.SIGHUP:
                self.reload()
            else:
                self.stop_requested.set()

    def _tick(self) -> None:
        self.notifier.status(self.status_line())
        if self.at_risk is not None and time.monotonic() - self._at_risk_checked >= CHECK_EVERY_S:
            self._at_risk_checked = time.monotonic()
            for runner in list(self.runners.values()):
                self._check_at_risk(runner)
        due = self.watchdog_s and time.monotonic() - self._last_ping >= self.watchdog_s
        if due and self.scheduler.healthy():
            self.notifier.send("WATCHDOG=1")
            self._last_ping = time.monotonic()

    def _stop(self) -> int:
        """Stop scheduling, let running jobs finish or cancel them, exit within 10 s."""
        self.notifier.send("STOPPING=1")
        self.log.info("daemon_stopping")
        self.scheduler.shutdown()
        kill_running_commands()  # a discovery command must not outlive the daemon
        for runner in self.runners.values():
            if runner.live is not None:
                runner.live.stop()  # no new live runs; a running one ends as any job
        if self.control is not None:
            self.control.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        grace = time.monotonic() + STOP_TIMEOUT_S / 2
        while time.monotonic() < deadline and self._busy():
            if time.monotonic() > grace:
                for runner in self.runners.values():
                    runner.retire()  # cancel: transfers stop between chunks
            if time.monotonic() > deadline - 2:
                for runner in self.runners.values():
                    runner.close()  # break a blocked remote read
            time.sleep(0.1)
        for runner in self.runners.values():
            runner.retire()
            runner.close()
        self.dispatcher.close()
        self.manifest.close()
        self.log.info("daemon_stopped", busy=self._busy())
        return 0

    def _busy(self) -> bool:
        return any(runner.running for runner in self.runners.values())

    # -- containers ------------------------------------------------------------------
    def _add(self, container: ContainerConfig, predecessor: ContainerRunner | None = None) -> None:
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
        if not runner.retired and not self.stop_requested.is_set():
            self.scheduler.run_now(runner, Job.SYNC, trigger="live")

    def _remove(self, name: str) -> ContainerRunner:
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

    def _sink_error(self, container: str, kind: str) -> None:
        self.metrics.errors.labels(container, kind).inc()

    def _check_at_risk(self, runner: ContainerRunner) -> None:
        if self.at_risk is not None and not runner.retired:
            known = runner.results.last_success_ts.get(Job.SYNC) is not None
            self.at_risk.check(runner.name, runner.remote_only.summary(), known)

    def _finished(self, runner: ContainerRunner, job: Job, outcome: RunOutcome) -> None:
        self.metrics.run_finished(runner.name, job, outcome)
        self._check_at_risk(runner)
        if job == Job.SYNC and outcome.result == RunResult.FAILURE and not runner.retired:
            self.scheduler.back_off(runner)

    # -- discovery -------------------------------------------------------------------
    def _schedule_discovery(self) -> None:
        """One job per `discover:` source: read now, then on its interval. Each reload
        makes new jobs (new ids), so a read still running under the old config never delays
        the new one; its result is dropped (see `_discover`)."""
        for job in self._discovery_jobs:
            self.scheduler.drop(job)
        self._discovery_round += 1
        self._discovery_jobs = []
        for index, source in enumerate(self.config.discover):
            job = f"discover:{self._discovery_round}:{index}"
            self.scheduler.every(
                functools.partial(self._discover, self.config, index), source.interval_s, job
            )
            self._discovery_jobs.append(job)

    def _discover(self, config: Config, index: int) -> None:
        """Read source `index` of `config` again and start, stop or replace the containers
        it changed. The source is read outside the reload lock (a command may take up to
        its timeout: reload and the control socket must not wait for it); the lock is
        taken only to apply the result, which is dropped if a reload came meanwhile. A
        source that cannot be read keeps what it found before."""
        source = config.discover[index]
        try:
            found = discover(source, config)
        except DiscoveryError as exc:
            if not self.stop_requested.is_set():  # at stop, its command was killed
                self.log.warning("discovery_failed", source=source.label, error=str(exc))
            return
        with self._reload_lock:
            if self.config is not config or self.stop_requested.is_set():
                return  # reloaded while reading (the new config's job reads again), or stopping
            self._report_discovery(index, source, found)
            self.discovered[index] = found.containers
            wanted, clashes = merge(self.config.containers, self._discovered_lists_for(self.config))
            changes = self._apply_containers(wanted)
            if any(changes.values()) or clashes:
                self.log.info(
                    "containers_discovered",
                    source=source.label,
                    found=len(found.containers),
                    clashes=clashes,
                    **changes,
                )

    def _report_discovery(self, index: int, source: DiscoverSource, found: Found) -> None:
        """Log what source `index` skipped, refused and warned about, if that changed."""
        report = (found.problems, found.clashes, found.warnings)
        if report == self.discovery_reports.get(index):
            return
        self.discovery_reports[index] = report
        for warning in found.warnings:
            self.log.warning("discovery_warning", source=source.label, warning=warning)
        for clash in found.clashes:
            self.log.error(
                "discovered_name_clash",
                source=source.label,
                name=clash.name[:64],
                claimed_by=list(clash.claimed_by),
                error=str(clash),
            )
        for problem in found.problems:
            self.log.warning("discovered_entry_refused", source=source.label, error=problem)

    # -- reload ----------------------------------------------------------------------
    def reload(self) -> dict[str, Any]:
        """Re-read the config. Added, removed and changed containers take effect; running
        jobs of unchanged ones are not disturbed. An invalid config keeps the old one.
        Return what happened (the control socket's `reload` result)."""
        with self._reload_lock:
            self.notifier.send("RELOADING=1")
            logs.reopen()
            try:
                new = load_config(self.config_path)
            except ConfigError as exc:
                self.log.error("config_reload_failed", error=str(exc))
                self.notifier.send("READY=1")
                return {"reloaded": False, "error": str(exc)}
            changes = self._apply(new)
            self.log.info("config_reloaded", **changes)
            self.notifier.send("READY=1", f"STATUS={self.status_line()}")
            return {"reloaded": True, **changes}

    def _apply(self, new: Config) -> dict[str, Any]:
        if new.discover != self.config.discover:
            self.discovered.clear()  # sources changed: what they find is read again
            self.discovery_reports.clear()
        wanted, _clashes = merge(new.containers, self._discovered_lists_for(new))
        changes = self._apply_containers(wanted)
        needs_restart = [
            key
            for key in ("media_root", "state_dir", "control", "metrics", "ingest", "library")
            if getattr(new, key) != getattr(self.config, key)
        ]
        if needs_restart:
            self.log.warning("config_needs_restart", keys=needs_restart)
        if new.log != self.config.log:
            logs.configure(new.log.level, new.log.file)
        self.config = new
        self._schedule_discovery()  # also reads every source again now
        return changes

    def _discovered_lists_for(self, config: Config) -> list[list[ContainerConfig]]:
        """What each of `config`'s sources found last, in their order."""
        return [self.discovered.get(i, []) for i in range(len(config.discover))]

    def _apply_containers(self, wanted: list[ContainerConfig]) -> dict[str, list[str]]:
        """Make the running containers `wanted`: start the new, stop the gone (their library
        and history stay), replace the changed after their running job."""
        old = {name: runner.config for name, runner in self.runners.items()}
        fresh = {c.name: c for c in wanted}
        added = [n for n in fresh if n not in old]
        removed = [n for n in old if n not in fresh]
        changed = [n for n in fresh if n in old and fresh[n] != old[n]]
        for name in fresh.keys() & old.keys():
            if fresh[name] == old[name] and fresh[name].source != old[name].source:
                self.runners[name].config = fresh[name]  # moved to another file, unchanged
        for name in removed:
            self._remove(name)
        for name in changed:
            self._add(fresh[name], self._remove(name))
        for name in added:
            self._add(fresh[name])
        return {"added": added, "removed": removed, "changed": changed}

    # -- what status shows -----------------------------------------------------------
    def status_line(self) -> str:
        """systemd's STATUS= line (`status.status_line`)."""
        return status_line(self.runners.values())

    def status(self, runner: ContainerRunner) -> dict[str, Any]:
        """`runner`'s container in `status` (`status.container_status`)."""
        return container_status(runner, self.scheduler)
