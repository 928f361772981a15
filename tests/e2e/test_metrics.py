"""Metrics scraped over HTTP from a running daemon, checked by value, by promtool and by a
real Prometheus server evaluating every dashboard query and alert expression."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from forge_syncd.config.model import Schedule
from forge_syncd.library.manifest import Manifest
from forge_syncd.service.metrics import Metrics, StateCollector, sync_interval_seconds
from forge_syncd.service.runner import ContainerRunner
from tests.conftest import make_container
from tests.support.cli import write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.trees import write_file

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "packaging" / "grafana" / "forge-sync.json"
RULES = ROOT / "packaging" / "prometheus" / "forge-sync.rules.yml"
RULES_TEST = ROOT / "tests" / "promtool" / "forge-sync-rules.test.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")


def test_runner_totals_reach_a_fresh_registry(sshd: SshdServer, tmp_path: Path) -> None:
    """After a real sync and cleanup, the registry holds the transferred and purged totals,
    the run counts and the last-success time (checked with get_sample_value)."""
    remote = tmp_path / "remote"
    write_file(remote / "a.png", b"a" * 1000, 1.7e9)
    write_file(remote / "b.png", b"b" * 2345, 1.7e9)
    import dataclasses

    from forge_syncd.config.model import CleanupConfig

    container = dataclasses.replace(
        make_container(sshd, remote), cleanup=CleanupConfig(enabled=True, older_than_s=60)
    )
    (tmp_path / "state").mkdir()
    manifest = Manifest.open(tmp_path / "state")
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    runner = ContainerRunner(
        container,
        os.fsencode(tmp_path / "media"),
        manifest,
        lambda r, job, outcome: metrics.run_finished(r.name, job, outcome),
    )
    registry.register(StateCollector(lambda: [runner]))
    runner.run("sync")
    runner.run("cleanup")
    runner.close()
    value = registry.get_sample_value
    labels = {"container": "forge-a"}
    assert value("forge_sync_files_transferred_total", labels) == 2
    assert value("forge_sync_bytes_transferred_total", labels) == 3345
    assert value("forge_sync_purged_files_total", labels) == 2
    assert value("forge_sync_purged_bytes_total", labels) == 3345
    assert value("forge_sync_remote_files", labels) == 2
    assert value("forge_sync_pending_files", labels) == 0
    assert value("forge_sync_container_up", labels) == 1
    assert value("forge_sync_runs_total", {**labels, "operation": "sync", "result": "success"}) == 1
    assert value("forge_sync_run_duration_seconds_count", {**labels, "operation": "cleanup"}) == 1
    assert value(
        "forge_sync_last_success_timestamp_seconds", {**labels, "operation": "sync"}
    ) == pytest.approx(time.time(), abs=60)
    assert value("forge_sync_job_running", {**labels, "operation": "sync"}) == 0
    assert value("forge_sync_build_info", {"version": "0.1.0"}) == 1


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def try_samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        return samples(scrape(port))
    except OSError:
        return {}


@pytest.fixture(scope="module")
def scraped_daemon(
    sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, int]]:
    """A daemon with a good container (3 files, cleanup on) and one on a closed port."""
    work = tmp_path_factory.mktemp("metrics")
    remote = work / "remote"
    for name, size in (("a.png", 1000), ("b.png", 20_000), ("c.mp4", 300_000)):
        write_file(remote / "day" / name, os.urandom(size), 1.7e9)
    config = write_config(work, sshd, remote, interval="2s")
    port = free_port()
    text = config.read_text().replace(
        "metrics: {listen: null}", f"metrics: {{listen: 127.0.0.1:{port}}}"
    )
    text = text.replace(
        "    ssh: {port:",
        "    cleanup: {enabled: true, older_than: 1h, interval: 2s}\n    ssh: {port:",
    )
    text += f"  - {{name: closed, kind: generic, host: 127.0.0.1, root: /x, ssh: {{port: {free_port()}}}}}\n"
    config.write_text(text)
    process = start_daemon(config)
    wait_until(
        lambda: (
            try_samples(port).get(("forge_sync_purged_files_total", (("container", "forge-a"),)))
            == 3
        ),
        timeout=60,
        what="sync and cleanup of forge-a",
    )
    yield work, port
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_scrape_values_match_what_happened(scraped_daemon: tuple[Path, int]) -> None:
    """Files and bytes equal what was transferred and purged; up is 1 for the good container
    and 0 for the closed port, which also counts `connect` errors; the good container has
    its one kept-open connection (`forge_sync_connections`), the closed port none."""
    _work, port = scraped_daemon
    got = samples(scrape(port))
    good = (("container", "forge-a"),)
    closed = (("container", "closed"),)
    assert got[("forge_sync_files_transferred_total", good)] == 3
    assert got[("forge_sync_bytes_transferred_total", good)] == 321_000
    assert got[("forge_sync_purged_bytes_total", good)] == 321_000
    assert got[("forge_sync_container_up", good)] == 1
    assert got[("forge_sync_container_up", closed)] == 0
    assert got[("forge_sync_dedupe_saved_bytes", ())] == 0  # no duplicates synced
    assert got[("forge_sync_errors_total", (("container", "closed"), ("kind", "connect")))] >= 1
    assert (
        got[
            (
                "forge_sync_runs_total",
                (("container", "closed"), ("operation", "sync"), ("result", "failure")),
            )
        ]
        >= 1
    )
    assert (
        "forge_sync_last_success_timestamp_seconds",
        (*closed, ("operation", "sync")),
    ) not in got
    assert not [key for key in got if "job" in dict(key[1])], "SPEC's label is `operation`"
    # Live mode: forge-a's watcher runs; the closed port has none (polling, backing off).
    watching = ("forge_sync_watch_active", good)
    wait_until(lambda: try_samples(port).get(watching) == 1, 30, "forge-a's watcher")
    later = samples(scrape(port))
    assert later[("forge_sync_watch_active", closed)] == 0
    # Its kept-open connection (the watcher's): one; the closed port: none.
    assert later[("forge_sync_connections", good)] == 1
    assert later[("forge_sync_connections", closed)] == 0


@needs_promtool
def test_scrape_passes_promtool_check_metrics(scraped_daemon: tuple[Path, int]) -> None:
    """`promtool check metrics` finds nothing to complain about in a real scrape."""
    _work, port = scraped_daemon
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape(port), capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == ""


@needs_promtool
def test_rules_pass_promtool_check_rules() -> None:
    """The shipped alert rules are valid and cover stale sync, down, failures, disk, events."""
    check = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    names = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {
        "ForgeSyncStale",
        "ForgeSyncContainerDown",
        "ForgeSyncDiskFull",
        "ForgeSyncEventsBackingUp",
        "ForgeSyncRepeatedFailures",
    } <= names


def dashboard_queries() -> list[tuple[str, str]]:
    """Return (panel title, PromQL expression) for every target of the shipped dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    """Return every rule of the shipped alert rules file."""
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def concrete(expr: str) -> str:
    """Replace Grafana's variables by what Grafana would send."""
    return (
        expr.replace("$container", ".*").replace("$__rate_interval", "1m").replace("$__range", "1h")
    )


SPEC_METRICS = {
    "forge_sync_files_transferred_total",
    "forge_sync_bytes_transferred_total",
    "forge_sync_runs_total",
    "forge_sync_run_duration_seconds_bucket",
    "forge_sync_run_duration_seconds_count",
    "forge_sync_run_duration_seconds_sum",
    "forge_sync_last_success_timestamp_seconds",
    "forge_sync_last_run_timestamp_seconds",
    "forge_sync_remote_files",
    "forge_sync_remote_bytes",
    "forge_sync_pending_files",
    "forge_sync_pending_bytes",
    "forge_sync_purged_files_total",
    "forge_sync_purged_bytes_total",
    "forge_sync_errors_total",
    "forge_sync_container_up",
    "forge_sync_remote_only_files",
    "forge_sync_remote_only_bytes",
    "forge_sync_remote_only_oldest_seconds",
    "forge_sync_watch_active",
    "forge_sync_versions_kept_total",
    "forge_sync_job_running",
    "forge_sync_events_pending",
    "forge_sync_build_info",
    "forge_sync_notifications_total",  # round 3
    "forge_sync_connections",  # round 3
    "forge_sync_rate_bytes_per_second",
    "forge_sync_link_rtt_seconds",
}
# Names SPEC does not list, each documented in the README's metrics table.
EXTRA_METRICS = {"forge_sync_sync_interval_seconds"}


def shipped_promql() -> list[tuple[str, str]]:
    """Return (where, text) for every query, legend and annotation the dashboard and the
    alert rules ship."""
    found = [(title, expr) for title, expr in dashboard_queries()]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found += [(p["title"], t["legendFormat"]) for p in panels for t in p["targets"]]
    for rule in alert_rules():
        found.append((rule["alert"], rule["expr"]))
        found += [(rule["alert"], text) for text in rule.get("annotations", {}).values()]
    return found


def test_dashboard_and_rules_use_only_spec_metric_names() -> None:
    """Every metric named in the dashboard and in the alert rules is one of SPEC's, or an
    extra one the README's metrics table documents."""
    used = {m for _where, text in shipped_promql() for m in re.findall(r"forge_sync_\w+", text)}
    assert used, "no metric found: the dashboard or rules did not load"
    assert used <= SPEC_METRICS | EXTRA_METRICS, used - SPEC_METRICS - EXTRA_METRICS
    readme = (ROOT / "README.md").read_text()
    assert all(f"| `{name}` |" in readme for name in EXTRA_METRICS)


def test_dashboard_and_rules_name_operation_never_job() -> None:
    """No query, legend or annotation uses a `job` label: SPEC's label is `operation`, and a
    Prometheus with a default scrape config renames a scraped `job` to `exported_job`."""
    job_label = re.compile(r"(?<![\w$])job(?![\w])|\$labels\.job\b")
    offending = [(where, text) for where, text in shipped_promql() if job_label.search(text)]
    assert offending == []
    assert any("operation" in text for _where, text in shipped_promql())


@needs_promtool
def test_stale_sync_and_container_down_alerts_fire_in_promtool_unit_tests() -> None:
    """`promtool test rules` runs tests/promtool/forge-sync-rules.test.yml: with the labels a
    default scrape config adds, the stale-sync alert fires after 3 of the container's own
    intervals plus its 5 minutes (5 min, 1 min and 1 h intervals; not for a container that
    keeps syncing, nor for cleanup), container-down after 15 minutes (and clears when the
    container is back), never-synced after 30, repeated failures at the third in 30 min,
    disk full on a disk_full error, events backing up after 15 min over 1000; and each
    shipped alert is tested there."""
    check = subprocess.run(
        ["promtool", "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert tested == {rule["alert"] for rule in alert_rules()}
    firing = re.findall(
        r"alertname: (\w+)\n\s+exp_alerts:\s*(?:#.*)?\n\s+- exp_labels", RULES_TEST.read_text()
    )
    assert set(firing) == tested, "every alert is shown firing, not only silent"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs prometheus")
def test_real_prometheus_evaluates_every_query_and_alert(
    scraped_daemon: tuple[Path, int], tmp_path: Path
) -> None:
    """A real Prometheus with a default scrape config (`honor_labels` unset) scrapes the
    daemon; every dashboard query and alert expression evaluates without error; throughput,
    last-success and runs panels return data; the stale-sync alert's expression sees the
    synced container, and the container-down alert is pending for the closed port."""
    _work, metrics_port = scraped_daemon
    web_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                # A default scrape config: the target's `job` label is Prometheus' own.
                "scrape_configs": [
                    {
                        "job_name": "forge-syncd",
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def query(expr: str) -> dict[str, object]:
        url = f"http://127.0.0.1:{web_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def has_data(expr: str) -> bool:
        try:
            return bool(query(expr)["data"]["result"])  # type: ignore[index]
        except OSError:
            return False

    try:
        wait_until(lambda: has_data('up{job="forge-syncd"} == 1'), timeout=60, what="a scrape")
        wait_until(
            lambda: has_data(concrete(dashboard_queries()[0][1])),
            timeout=60,
            what="two scrapes for rate()",
        )
        for title, expr in dashboard_queries():
            answer = query(concrete(expr))
            assert answer["status"] == "success", (title, answer)
        rules = {rule["alert"]: rule["expr"] for rule in alert_rules()}
        for alert, expr in rules.items():
            assert query(expr)["status"] == "success", alert
        titles = dict(dashboard_queries())
        assert has_data(concrete(titles["Throughput"]))
        assert has_data(concrete(titles["Last successful sync (age)"]))
        assert has_data(concrete(titles["Runs by result"]))
        # The stale alert's expression without its threshold: forge-a's sync series is seen
        # (a `job` selector would match nothing under this scrape config).
        stale_age = rules["ForgeSyncStale"].split(">")[0]
        answer = query(stale_age)["data"]["result"]  # type: ignore[index]
        assert {series["metric"]["container"] for series in answer} == {"forge-a"}
        wait_until(
            lambda: has_data(
                'ALERTS{alertname="ForgeSyncContainerDown", container="closed", job="forge-syncd"}'
            ),
            timeout=60,
            what="the container-down alert pending for the closed port",
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_shipped_dashboard_is_the_generated_one() -> None:
    """packaging/grafana/forge-sync.json is what scripts/make_dashboard.py writes (edit the
    script, not the JSON) and has the container variable."""
    from scripts.make_dashboard import dashboard

    shipped = json.loads(DASHBOARD.read_text())
    assert shipped == dashboard()
    assert "container" in [v["name"] for v in shipped["templating"]["list"]]


def test_each_container_exports_its_own_sync_interval(scraped_daemon: tuple[Path, int]) -> None:
    """`forge_sync_sync_interval_seconds{container}` is the configured interval (2 s, from
    the config's defaults, for both containers; the stale-sync alert multiplies it by 3)."""
    _work, port = scraped_daemon
    got = samples(scrape(port))
    assert got[("forge_sync_sync_interval_seconds", (("container", "forge-a"),))] == 2
    assert got[("forge_sync_sync_interval_seconds", (("container", "closed"),))] == 2


@pytest.mark.parametrize(
    ("cron", "seconds"),
    [
        ("*/5 * * * *", 300),
        ("* * * * *", 60),
        ("0 3 * * *", 86_400),
        ("0 9,17 * * *", 16 * 3600),  # 17:00 to 09:00 the next day
        ("0 9 * * 1-5", 3 * 86_400),  # Friday 09:00 to Monday 09:00
        ("30 2 * * 0", 7 * 86_400),
    ],
)
def test_a_cron_schedules_interval_is_its_longest_gap(cron: str, seconds: int) -> None:
    """For a cron `schedule` the interval is the longest gap between two consecutive runs
    over a week: a weekday-only schedule's weekend, a twice-a-day schedule's night."""
    assert sync_interval_seconds(Schedule(cron=cron)) == seconds
    assert sync_interval_seconds(Schedule(interval_s=90.0)) == 90
