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
from typing import TYPE_CHECKING, NamedTuple

from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forge_syncd import __version__
from forge_syncd.config.model import Schedule
from forge_syncd.jobs.kinds import Job, WatchState
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.limits.registry import LIMITS
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
UNIT = ("files", "bytes")


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


# What one runner shows in a group of gauges read together: (labels after `container`, one
# value per gauge of the group) pairs; none while the value is unknown.
Samples = Iterable[tuple[tuple[str, ...], tuple[float, ...]]]


class Gauges(NamedTuple):
    """Gauges read from each runner at scrape time: their (name, help) pairs, the labels
    after `container`, and `read`, which gives a runner's samples."""

    families: tuple[tuple[str, str], ...]
    labels: tuple[str, ...]
    read: Callable[[ContainerRunner], Samples]


def _per_operation(stamps: dict[Job, float]) -> Samples:
    return [((operation,), (stamps[operation],)) for operation in OPERATIONS if operation in stamps]


def _pending(runner: ContainerRunner) -> Samples:
    running = runner.running == Job.SYNC
    return [((), runner.progress.pending() if running else runner.pending_after)]


def _remote_only(runner: ContainerRunner) -> Samples:
    only = runner.remote_only.summary()
    return [((), (only["files"], only["bytes"], only["oldest_s"] or 0.0))]


def _one(name: str, doc: str, read: Callable[[ContainerRunner], Samples], *labels: str) -> Gauges:
    return Gauges(((name, doc),), labels, read)


def _rate(runner: ContainerRunner) -> Samples:
    """The container's receive rate (`limits/registry.py`; 0 when idle)."""
    limiter = LIMITS.get(runner.name)
    return [((), (0.0 if limiter is None else limiter.measured_bps(),))]


def _rtt(runner: ContainerRunner) -> Samples:
    """The last round trip timed on the container's link (none before one is timed)."""
    limiter = LIMITS.get(runner.name)
    return [] if limiter is None or limiter.rtt_s is None else [((), (limiter.rtt_s,))]


REMOTE_ONLY = (
    ("files", "Wanted files that exist only on the container (no durable copy)."),
    ("bytes", "Bytes of the files that exist only on the container."),
    ("oldest_seconds", "Age (by mtime) of the oldest file only on the container."),
)
# The per-container gauges, in the order a scrape shows them.
GAUGES = (
    _one(
        "forge_sync_container_up",
        "1 when the last connection to the container succeeded.",
        lambda r: [((), (1 if r.reachable else 0,))],
    ),
    _one(
        "forge_sync_job_running",
        "1 while an operation runs.",
        lambda r: [((op,), (1 if r.running == op else 0,)) for op in OPERATIONS],
        "operation",
    ),
    _one(
        "forge_sync_last_run_timestamp_seconds",
        "When the last run ended.",
        lambda r: _per_operation(r.results.last_run_ts),
        "operation",
    ),
    _one(
        "forge_sync_last_success_timestamp_seconds",
        "When the last successful run ended.",
        lambda r: _per_operation(r.results.last_success_ts),
        "operation",
    ),
    _one(
        "forge_sync_sync_interval_seconds",
        "The container's sync interval (a cron schedule: its longest gap over a week).",
        lambda r: [((), (sync_interval_seconds(r.config.sync.schedule),))],
    ),
    _one(
        "forge_sync_connections",
        "Connections open to the container (SSH: the kept-open one and a run's extra ones).",
        lambda r: [((), (r.remote.connections,))],
    ),
    _one(
        "forge_sync_watch_active",
        "1 while the container's live watcher runs (0: polling on its schedule, or off).",
        lambda r: [((), (1 if r.watch_state == WatchState.WATCHING else 0,))],
    ),
    Gauges(
        tuple((f"forge_sync_remote_{u}", f"Wanted remote {u} the last listing saw.") for u in UNIT),
        (),
        lambda r: [] if r.remote_seen is None else [((), r.remote_seen)],
    ),
    Gauges(
        tuple((f"forge_sync_pending_{u}", f"{u.capitalize()} still to transfer.") for u in UNIT),
        (),
        _pending,
    ),
    Gauges(tuple((f"forge_sync_remote_only_{u}", doc) for u, doc in REMOTE_ONLY), (), _remote_only),
    _one(
        "forge_sync_rate_bytes_per_second",
        "Bytes per second the container's transfers received over the last 2 s (0 when idle).",
        _rate,
    ),
    _one(
        "forge_sync_link_rtt_seconds",
        "The last round trip timed on the container's connection while it transferred"
        " (SSH keepalive answers; bwlimit auto holds its rise under auto_delay).",
        _rtt,
    ),
)


class StateCollector(Collector):
    """Exposes the runners' live state; `runners` is called at every scrape."""

    def __init__(
        self,
        runners: Callable[[], Iterable[ContainerRunner]],
        events_pending: Callable[[], dict[str, int]] | None = None,
        notifications: Callable[[], dict[tuple[str, str], int]] | None = None,
        mirror_backlog: Callable[[], dict[str, tuple[int, int]]] | None = None,
    ) -> None:
        self.runners = runners
        self.events_pending = events_pending or dict
        self.notifications = notifications or dict
        self.mirror_backlog = mirror_backlog or dict

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
        yield from self._mirrors()

    def _mirrors(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "forge_sync_mirror_pending_files",
            "Files a mirror sink has still to copy (queued, or failing), by sink.",
            labels=["sink"],
        )
        failures = GaugeMetricFamily(
            "forge_sync_mirror_failures",
            "Failed copies in a row of a mirror sink (0: its last copy worked), by sink.",
            labels=["sink"],
        )
        for sink, (files, failed) in sorted(self.mirror_backlog().items()):
            pending.add_metric([sink], files)
            failures.add_metric([sink], failed)
        yield pending
        yield failures

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
        for gauges in GAUGES:
            families = [
                GaugeMetricFamily(name, doc, labels=["container", *gauges.labels])
                for name, doc in gauges.families
            ]
            for runner in runners:
                for labels, values in gauges.read(runner):
                    for family, value in zip(families, values, strict=True):
                        family.add_metric([runner.name, *labels], value)
            yield from families


def serve(registry: CollectorRegistry, host: str, port: int) -> BoundedWSGIServer:
    """Given a registry and a listen address, start the /metrics HTTP server (bounded
    threads and time per connection, see metrics_http); return it (call .shutdown(), then
    .server_close() to stop). Port 0 picks a free port (see server.server_port). Raise
    OSError if the address cannot be bound."""
    server, _thread = start_metrics_server(registry, host, port)
    return server
