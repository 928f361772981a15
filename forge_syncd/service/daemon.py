"""The daemon's lifecycle: start, the main loop, reload, graceful stop. Its containers are
`service/containers.py`'s, its `discover:` sources `service/discovery.py`'s.

Signal handlers only record the signal; the main loop acts on it (as Supervisor does). The
loop also keeps systemd's STATUS= line current and sends WATCHDOG=1 only while the scheduler
proves, by its heartbeat job, that it is still dispatching.
"""

from __future__ import annotations

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
from forge_syncd.config import Config, ConfigError, load_config
from forge_syncd.control.server import AlreadyRunning, ControlServer
from forge_syncd.events.at_risk import CHECK_EVERY_S, AtRiskWatch, threshold_s
from forge_syncd.events.dispatcher import Dispatcher
from forge_syncd.library.manifest import Manifest
from forge_syncd.limits.registry import LIMITS
from forge_syncd.service.api import ControlApi
from forge_syncd.service.containers import Containers
from forge_syncd.service.dedupe import SavedBytesCollector
from forge_syncd.service.discover.sources import kill_running_commands
from forge_syncd.service.discovery import Discovery
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
        self.control: ControlServer | None = None
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.dispatcher = Dispatcher(config.ingest, self.manifest, self._sink_error)
        self._register_state_metrics()
        self.metrics_server: WSGIServer | None = None
        # Media at risk as events, when a notification sink says it.
        at_risk_after = threshold_s(config.ingest)
        at_risk = None if at_risk_after is None else AtRiskWatch(self.manifest, at_risk_after)
        self._at_risk_checked = 0.0
        self.containers = Containers(
            self.media_root,
            self.manifest,
            self.scheduler,
            self.metrics,
            at_risk,
            self.stop_requested,
        )
        self.discovery = Discovery(
            self.scheduler,
            self.containers,
            lambda: self.config,
            self._reload_lock,
            self.stop_requested,
        )
        # What the control answers see (view.DaemonView): the same objects, never replaced.
        self.runners = self.containers.runners
        self.first_triggers = self.containers.first_triggers
        self.discovered = self.discovery.found

    def _register_state_metrics(self) -> None:
        """The gauges read at scrape time: the runners' state, the sinks' backlogs."""
        self.registry.register(
            StateCollector(
                lambda: list(self.containers.runners.values()),
                self.dispatcher.pending,
                self.dispatcher.notifications,
                self.dispatcher.mirror_backlog,
            )
        )

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        self._install_signal_handlers()
        self.registry.register(SavedBytesCollector(self.manifest))
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
        LIMITS.configure(self.config.limits.bwlimit)
        self.scheduler.start()
        for container in self.config.containers:
            self.containers.add(container)
        self.discovery.schedule(self.config)
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
        if time.monotonic() - self._at_risk_checked >= CHECK_EVERY_S:
            self._at_risk_checked = time.monotonic()
            self.containers.check_at_risk()
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
        self.containers.stop_live()
        if self.control is not None:
            self.control.close()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.containers.wind_down(STOP_TIMEOUT_S)
        self.dispatcher.close()
        self.manifest.close()
        self.log.info("daemon_stopped", busy=self.containers.busy())
        return 0

    def _sink_error(self, container: str, kind: str) -> None:
        self.metrics.errors.labels(container, kind).inc()

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
            self.discovery.forget()  # sources changed: what they find is read again
        wanted, _clashes = self.discovery.wanted(new)
        changes = self.containers.apply(wanted)
        needs_restart = [
            key
            for key in ("media_root", "state_dir", "control", "metrics", "ingest", "library")
            if getattr(new, key) != getattr(self.config, key)
        ]
        if needs_restart:
            self.log.warning("config_needs_restart", keys=needs_restart)
        LIMITS.configure(new.limits.bwlimit)  # the running transfers' next chunk reads it
        for container in wanted:  # a changed `bwlimit` applies to a running transfer too
            LIMITS.limiter(container.name, container.sync.bwlimit, container.sync.auto_delay_s)
        if new.log != self.config.log:
            logs.configure(new.log.level, new.log.file)
        self.config = new
        self.discovery.schedule(new)  # also reads every source again now
        return changes

    # -- what status shows -----------------------------------------------------------
    def status_line(self) -> str:
        """systemd's STATUS= line (`status.status_line`)."""
        return status_line(self.runners.values())

    def status(self, runner: ContainerRunner) -> dict[str, Any]:
        """`runner`'s container in `status` (`status.container_status`)."""
        return container_status(runner, self.scheduler)
