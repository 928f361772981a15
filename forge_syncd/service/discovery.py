"""The `discover:` sources in the daemon: each read on its interval, what it found merged
with the configured containers, and the containers started, stopped or replaced to match.

A source is read outside the reload lock (a command may take up to its timeout: reload and
the control socket must not wait for it); the lock is taken only to apply the result,
which is dropped if a reload came meanwhile. A source that cannot be read keeps what it
found before.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

from forge_syncd import logs
from forge_syncd.config import Config, ContainerConfig
from forge_syncd.config.model import DiscoverSource
from forge_syncd.service.containers import Containers
from forge_syncd.service.discover.sources import Clash, DiscoveryError, Found, discover, merge
from forge_syncd.service.scheduler import JobScheduler


class Discovery:
    """The daemon's `discover:` sources. `found`: what each source found last, by index;
    `reports`: what each reported then (skipped entries, clashing names, warnings: logged
    again only when they change). `config()` is the daemon's current config; `lock` its
    reload lock."""

    def __init__(
        self,
        scheduler: JobScheduler,
        containers: Containers,
        config: Callable[[], Config],
        lock: threading.RLock,
        stopping: threading.Event,
    ) -> None:
        self.scheduler = scheduler
        self.containers = containers
        self.config = config
        self.lock = lock
        self.stopping = stopping
        self.found: dict[int, list[ContainerConfig]] = {}
        self.reports: dict[int, tuple[list[str], list[Clash], list[str]]] = {}
        self._jobs: list[str] = []
        self._round = 0
        self.log = logs.get_logger()

    def wanted(self, config: Config) -> tuple[list[ContainerConfig], list[str]]:
        """Return the containers `config` and what its sources found last make, and the
        names they clash on (`discover.sources.merge`)."""
        found = [self.found.get(i, []) for i in range(len(config.discover))]
        return merge(config.containers, found)

    def forget(self) -> None:
        """Drop what the sources found and reported (they changed: they are read again)."""
        self.found.clear()
        self.reports.clear()

    def schedule(self, config: Config) -> None:
        """One job per source of `config`: read now, then on its interval. Each call makes
        new jobs (new ids), so a read still running under an old config never delays the
        new one; its result is dropped (see `_discover`)."""
        for job in self._jobs:
            self.scheduler.drop(job)
        self._round += 1
        self._jobs = []
        for index, source in enumerate(config.discover):
            job = f"discover:{self._round}:{index}"
            self.scheduler.every(
                functools.partial(self._discover, config, index), source.interval_s, job
            )
            self._jobs.append(job)

    def _discover(self, config: Config, index: int) -> None:
        """Read source `index` of `config` again and start, stop or replace the containers
        it changed (unless a reload or the stop came meanwhile)."""
        source = config.discover[index]
        try:
            found = discover(source, config)
        except DiscoveryError as exc:
            if not self.stopping.is_set():  # at stop, its command was killed
                self.log.warning("discovery_failed", source=source.label, error=str(exc))
            return
        with self.lock:
            if self.config() is not config or self.stopping.is_set():
                return  # reloaded while reading (the new config's job reads again), or stopping
            self._report(index, source, found)
            self.found[index] = found.containers
            wanted, clashes = self.wanted(config)
            changes = self.containers.apply(wanted)
            if any(changes.values()) or clashes:
                self.log.info(
                    "containers_discovered",
                    source=source.label,
                    found=len(found.containers),
                    clashes=clashes,
                    **changes,
                )

    def _report(self, index: int, source: DiscoverSource, found: Found) -> None:
        """Log what source `index` skipped, refused and warned about, if that changed."""
        report = (found.problems, found.clashes, found.warnings)
        if report == self.reports.get(index):
            return
        self.reports[index] = report
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
