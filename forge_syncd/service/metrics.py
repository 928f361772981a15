"""Prometheus metrics (SPEC "Metrics"), on a registry passed in.

Run counts, errors and durations are instruments updated when a run ends. Everything that
describes a container's current state — up, running jobs, what the last listing saw, what
is pending, totals transferred and purged, last run times — is read from the daemon's
runners at scrape time by `StateCollector.collect()`, so it is never stale and needs no
bookkeeping of its own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forge_syncd import __version__
from forge_syncd.config.model import Schedule
from forge_syncd.jobs.kinds import Job, WatchState
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.service.metrics_http import BoundedWSGIServer, start_metrics_server

if TYPE_CHECKING:
    from forge_syncd.service.runner import ContainerRunner

DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# SPEC names the label `operation`: a scraped label `job` is renamed `exported_job` by a
# Prometheus with a default scrape config, and alerts matching on it would never fire.
OPERATIONS = tuple(Job)
# A cron schedule's interval is its longest gap over this span (a week shows the weekend of
# a weekday-only schedule).
CRON_SPAN = timedelta(days=7)


def sync_interval_seconds(schedule: Schedule) -> float:
    """Given a container's sync schedule, return its interval in seconds: the configured
    `interval`, or for a `schedule` cron line the longest gap between two consecutive fire
    times from the start of today (UTC) through the first fire more than CRON_SPAN later;
    +Inf for a cron line that fires less than twice (nothing to call late)."""
    if schedule.cron is None:
        return schedule.interval_s or 300.0
    return _longest_cron_gap(schedule.cron, datetime.now(UTC).date())


@functools.lru_cache(maxsize=64)
def _longest_cron_gap(cron: str, day: date) -> float:
    """Return the longest gap (s) of `cron` from the start of `day`; cached per day (a cron
    line fires at most once a minute: at most 10,081 steps)."""
    trigger = CronTrigger.from_crontab(cron, timezone=UTC)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    fire = trigger.get_next_fire_time(None, start)
    longest = math.inf
    while fire is not None:
        following = trigger.get_next_fire_time(fire, fire)
        if following is None:
            break
        gap = (following - fire).total_seconds()
        longest = gap if math.isinf(longest) else max(longest, gap)
        if fire > start + CRON_SPAN:
            break
        fire = following
    return longest


class Metrics:
    """The instruments updated at the end of each run, and the build info."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "forge_sync_runs",
            "Finished runs by operation and result.",
            ["container", "operation", "result"],
            registry=registry,
        )
        self.duration = Histogram(
            "forge_sync_run_duration_seconds",
            "Run durations.",
            ["container", "operation"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "forge_sync_errors",
            "Failed runs by kind of failure.",
            ["container", "kind"],
            registry=registry,
        )
        self.versions = Counter(
            "forge_sync_versions_kept",
            "Earlier library files moved into .versions/ instead of being overwritten.",
            ["container"],
            registry=registry,
        )
        info = Gauge(
            "forge_sync_build_info", "forge-syncd version.", ["version"], registry=registry
        )
        info.labels(__version__).set(1)

    def run_finished(self, container: str, operation: Job, outcome: RunOutcome) -> None:
        """Given a container, the operation that ran (sync or cleanup) and its outcome,
        count the run, its duration and its error kinds."""
        self.runs.labels(container, operation, outcome.result).inc()
        self.duration.labels(container, operation).observe(outcome.duration_s)
        for kind in outcome.error_kinds:
            self.errors.labels(container, kind).inc()
        if outcome.versions:
            self.versions.labels(container).inc(outcome.versions)


class StateCollector(Collector):
    """Exposes the runners' live state; `runners` is called at every scrape."""

    def __init__(
        self,
        runners: Callable[[], Iterable[ContainerRunner]],
        events_pending: Callable[[], dict[str, int]] | None = None,
        notifications: Callable[[], dict[tuple[str, str], int]] | None = None,
    ) -> None:
        self.runners = runners
        self.events_pending = events_pending or dict
        self.notifications = notifications or dict

    def collect(self) -> Iterator[Metric]:
        runners = list(self.runners())
        yield from self._counters(runners)
        yield from self._gauges(runners)
        pending = GaugeMetricFamily(
            "forge_sync_events_pending", "Events not yet delivered, by sink.", labels=["sink"]
        )
        for sink, count in sorted(self.events_pending().items()):
            pending.add_metric([sink], count)
        yield pending
        sent = CounterMetricFamily(
            "forge_sync_notifications",
            "Notification messages by sink and result (sent, rate_limited, refused, failed).",
            labels=["sink", "result"],
        )
        for (sink, result), count in sorted(self.notifications().items()):
            sent.add_metric([sink, result], count)
        yield sent

    def _counters(self, runners: list[ContainerRunner]) -> Iterator[Metric]:
        specs = (
            ("forge_sync_files_transferred", "Files synced.", "synced_files"),
            ("forge_sync_bytes_transferred", "Bytes synced.", "synced_bytes"),
            ("forge_sync_purged_files", "Remote files purged.", "purged_files"),
            ("forge_sync_purged_bytes", "Remote bytes purged.", "purged_bytes"),
        )
        for name, doc, attr in specs:
            family = CounterMetricFamily(name, doc, labels=["container"])
            for runner in runners:
                family.add_metric([runner.name], getattr(runner.progress, attr))
            yield family

    def _gauges(self, runners: list[ContainerRunner]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "forge_sync_container_up",
            "1 when the last connection to the container succeeded.",
            labels=["container"],
        )
        running = GaugeMetricFamily(
            "forge_sync_job_running",
            "1 while an operation runs.",
            labels=["container", "operation"],
        )
        last_run = GaugeMetricFamily(
            "forge_sync_last_run_timestamp_seconds",
            "When the last run ended.",
            labels=["container", "operation"],
        )
        last_ok = GaugeMetricFamily(
            "forge_sync_last_success_timestamp_seconds",
            "When the last successful run ended.",
            labels=["container", "operation"],
        )
        remote = [
            GaugeMetricFamily(
                f"forge_sync_remote_{unit}",
                f"Wanted remote {unit} the last listing saw.",
                labels=["container"],
            )
            for unit in ("files", "bytes")
        ]
        pending = [
            GaugeMetricFamily(
                f"forge_sync_pending_{unit}",
                f"{unit.capitalize()} still to transfer.",
                labels=["container"],
            )
            for unit in ("files", "bytes")
        ]
        interval = GaugeMetricFamily(
            "forge_sync_sync_interval_seconds",
            "The container's sync interval (a cron schedule: its longest gap over a week).",
            labels=["container"],
        )
        watch = GaugeMetricFamily(
            "forge_sync_watch_active",
            "1 while the container's live watcher runs (0: polling on its schedule, or off).",
            labels=["container"],
        )
        at_risk = [
            GaugeMetricFamily(
                f"forge_sync_remote_only_{unit}",
                doc,
                labels=["container"],
            )
            for unit, doc in (
                ("files", "Wanted files that exist only on the container (no durable copy)."),
                ("bytes", "Bytes of the files that exist only on the container."),
                ("oldest_seconds", "Age (by mtime) of the oldest file only on the container."),
            )
        ]
        for runner in runners:
            name = runner.name
            up.add_metric([name], 1 if runner.reachable else 0)
            only = runner.remote_only.summary()
            values = (only["files"], only["bytes"], only["oldest_s"] or 0.0)
            for family, value in zip(at_risk, values, strict=True):
                family.add_metric([name], value)
            watch.add_metric([name], 1 if runner.watch_state == WatchState.WATCHING else 0)
            interval.add_metric([name], sync_interval_seconds(runner.config.sync.schedule))
            for operation in OPERATIONS:
                running.add_metric([name, operation], 1 if runner.running == operation else 0)
                if operation in runner.results.last_run_ts:
                    last_run.add_metric([name, operation], runner.results.last_run_ts[operation])
                if operation in runner.results.last_success_ts:
                    last_ok.add_metric([name, operation], runner.results.last_success_ts[operation])
            if runner.remote_seen is not None:
                for family, value in zip(remote, runner.remote_seen, strict=True):
                    family.add_metric([name], value)
            live = runner.progress.pending() if runner.running == Job.SYNC else runner.pending_after
            for family, value in zip(pending, live, strict=True):
                family.add_metric([name], value)
        yield from (up, running, last_run, last_ok, interval, watch, *remote, *pending, *at_risk)


def serve(registry: CollectorRegistry, host: str, port: int) -> BoundedWSGIServer:
    """Given a registry and a listen address, start the /metrics HTTP server (bounded
    threads and time per connection, see metrics_http); return it (call .shutdown(), then
    .server_close() to stop). Port 0 picks a free port (see server.server_port). Raise
    OSError if the address cannot be bound."""
    server, _thread = start_metrics_server(registry, host, port)
    return server
