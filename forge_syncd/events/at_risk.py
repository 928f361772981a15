"""Media at risk, as events: when the media only on a container (listed, not yet durable in
the library) gets older than the notification sinks' smallest `at_risk_after`, and when it
no longer is, the daemon records a `media_at_risk` event in the outbox; each notification
sink decides from there (its own threshold, once per crossing).

Checked when a run ends and every CHECK_EVERY_S (media ages while a container is
unreachable: that is when it matters). A container is first checked once a sync of this
daemon's life succeeded (before that, what is only on it is unknown: an empty list would
read as "clear" and make a sink say it again after every restart).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from forge_syncd.config.model import SinkConfig
from forge_syncd.library import events as records
from forge_syncd.library.manifest import Manifest

CHECK_EVERY_S = 30.0
DEFAULT_AFTER_S = 1800.0  # as the shipped Prometheus alert: remote-only media older than 30 min
NOTIFY_TYPES = frozenset({"ntfy", "discord", "telegram", "gotify"})


def threshold_s(sinks: Iterable[SinkConfig]) -> float | None:
    """Given the configured sinks, return the smallest `at_risk_after` of the notification
    sinks that say `at_risk`, or None when none does (no event is recorded then)."""
    found = [
        float(sink.options.get("at_risk_after_s", DEFAULT_AFTER_S))
        for sink in sinks
        if sink.type in NOTIFY_TYPES and "at_risk" in sink.options.get("when", ("at_risk",))
    ]
    return min(found) if found else None


def at_risk_now(summary: dict[str, Any], threshold: float) -> bool:
    """Given a container's status `remote_only` summary, return whether it is at risk."""
    files, oldest = summary.get("files") or 0, summary.get("oldest_s")
    return files > 0 and oldest is not None and oldest >= threshold


class AtRiskWatch:
    """Records `media_at_risk` events on each change of a container's at-risk state."""

    def __init__(self, manifest: Manifest, threshold: float) -> None:
        self.manifest = manifest
        self.threshold = threshold
        self.said: dict[str, bool] = {}
        self._lock = threading.Lock()

    def check(self, container: str, summary: dict[str, Any], known: bool) -> None:
        """Given a container's `remote_only` summary and whether it is known (a sync
        succeeded in this daemon's life), record an event if its state changed."""
        if not known and container not in self.said:
            return
        over = at_risk_now(summary, self.threshold)
        with self._lock:
            if self.said.get(container) == over:
                return
            self.said[container] = over
            event = records.media_at_risk(
                container, summary["files"], summary["bytes"], summary["oldest_s"], over
            )
            self.manifest.outbox.record([event])

    def forget(self, container: str) -> None:
        with self._lock:
            self.said.pop(container, None)
