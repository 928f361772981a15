"""Write packaging/grafana/forge-sync.json (run after changing a panel: the JSON is
generated so that every panel has the same shape and only SPEC's metric names)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

C = 'container=~"$container"'
R = "[$__rate_interval]"
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    # (title, type, unit, [(expr, legend)])
    (
        "Throughput",
        "timeseries",
        "Bps",
        [
            (
                f"sum by (container) (rate(forge_sync_bytes_transferred_total{{{C}}}{R}))",
                "{{container}}",
            )
        ],
    ),
    (
        "Files transferred / s",
        "timeseries",
        "ops",
        [
            (
                f"sum by (container) (rate(forge_sync_files_transferred_total{{{C}}}{R}))",
                "{{container}}",
            )
        ],
    ),
    (
        "Last successful sync (age)",
        "stat",
        "s",
        [
            (
                f'time() - forge_sync_last_success_timestamp_seconds{{operation="sync", {C}}}',
                "{{container}}",
            )
        ],
    ),
    (
        "Containers up",
        "stat",
        "none",
        [
            (f"sum(forge_sync_container_up{{{C}}})", "up"),
            (f"count(forge_sync_container_up{{{C}}})", "configured"),
        ],
    ),
    (
        "Pending backlog (files)",
        "timeseries",
        "none",
        [(f"forge_sync_pending_files{{{C}}}", "{{container}}")],
    ),
    (
        "Pending backlog (bytes)",
        "timeseries",
        "bytes",
        [(f"forge_sync_pending_bytes{{{C}}}", "{{container}}")],
    ),
    (
        "Files and bytes transferred (range)",
        "stat",
        "bytes",
        [
            (f"sum(increase(forge_sync_bytes_transferred_total{{{C}}}[$__range]))", "bytes"),
            (f"sum(increase(forge_sync_files_transferred_total{{{C}}}[$__range]))", "files"),
        ],
    ),
    (
        "Purge rate",
        "timeseries",
        "Bps",
        [
            (
                f"sum by (container) (rate(forge_sync_purged_bytes_total{{{C}}}{R}))",
                "{{container}} bytes",
            ),
            (
                f"sum by (container) (rate(forge_sync_purged_files_total{{{C}}}{R}))",
                "{{container}} files",
            ),
        ],
    ),
    (
        "Errors by kind",
        "timeseries",
        "none",
        [
            (
                f"sum by (kind) (increase(forge_sync_errors_total{{{C}}}{R}))",
                "{{kind}}",
            )
        ],
    ),
    (
        "Runs by result",
        "timeseries",
        "none",
        [
            (
                f"sum by (operation, result) (increase(forge_sync_runs_total{{{C}}}{R}))",
                "{{operation}} {{result}}",
            )
        ],
    ),
    (
        "Run duration (p50 / p95)",
        "timeseries",
        "s",
        [
            (
                "histogram_quantile(0.5, sum by (le, operation) "
                f"(rate(forge_sync_run_duration_seconds_bucket{{{C}}}{R})))",
                "p50 {{operation}}",
            ),
            (
                "histogram_quantile(0.95, sum by (le, operation) "
                f"(rate(forge_sync_run_duration_seconds_bucket{{{C}}}{R})))",
                "p95 {{operation}}",
            ),
        ],
    ),
    (
        "Jobs running",
        "timeseries",
        "none",
        [(f"sum by (operation) (forge_sync_job_running{{{C}}})", "{{operation}}")],
    ),
    (
        "Remote files seen",
        "timeseries",
        "none",
        [(f"forge_sync_remote_files{{{C}}}", "{{container}}")],
    ),
    (
        "Remote bytes seen",
        "timeseries",
        "bytes",
        [(f"forge_sync_remote_bytes{{{C}}}", "{{container}}")],
    ),
    ("Events pending delivery", "timeseries", "none", [("forge_sync_events_pending", "{{sink}}")]),
    ("Version", "stat", "none", [("forge_sync_build_info", "{{version}}")]),
    (
        "Media at risk: files only on the container",
        "timeseries",
        "none",
        [(f"forge_sync_remote_only_files{{{C}}}", "{{container}}")],
    ),
    (
        "Media at risk: oldest remote-only file (age)",
        "timeseries",
        "s",
        [(f"forge_sync_remote_only_oldest_seconds{{{C}}}", "{{container}}")],
    ),
    (
        "Media at risk: bytes only on the container",
        "timeseries",
        "bytes",
        [(f"forge_sync_remote_only_bytes{{{C}}}", "{{container}}")],
    ),
    (
        "Live watchers running",
        "stat",
        "none",
        [
            (f"sum(forge_sync_watch_active{{{C}}})", "watching"),
            (f"count(forge_sync_watch_active{{{C}}})", "containers"),
        ],
    ),
    (
        "Receive rate (bwlimit: the limit holds it)",
        "timeseries",
        "Bps",
        [(f"forge_sync_rate_bytes_per_second{{{C}}}", "{{container}}")],
    ),
    (
        "Link round trip while transferring (bwlimit auto holds its rise)",
        "timeseries",
        "s",
        [(f"forge_sync_link_rtt_seconds{{{C}}}", "{{container}}")],
    ),
]


def panel(
    index: int, title: str, kind: str, unit: str, targets: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "id": index + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": (index % 2) * 12, "y": (index // 2) * 8, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for n, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "title": "forge-syncd",
        "uid": "forge-syncd",
        "tags": ["forge-syncd"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                },
                {
                    "name": "container",
                    "type": "query",
                    "label": "Container",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {
                        "query": "label_values(forge_sync_container_up, container)",
                        "refId": "containers",
                    },
                    "definition": "label_values(forge_sync_container_up, container)",
                    "multi": True,
                    "includeAll": True,
                    "allValue": ".*",
                    "refresh": 2,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    target = root / "packaging" / "grafana" / "forge-sync.json"
    target.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {target}")
