"""The notification sink: events in, messages out, each at least once.

`deliver(event)` first applies the event to the sink's own state (`state.py`) in one
transaction — run totals, container health, messages put in the sink's outbox (the rules:
`rules.py`) — then sends what is due (`delivery.py`). It returns only when nothing due is
left unsent; it raises (`web.NotifyError`) when the service did not take a message, and the
dispatcher calls it again with the same event after its backoff: that event is already
applied (its id and time are recorded), so the retry only sends. A landed message waits in
the outbox for `min_interval` after the last one, gathering the runs that land meanwhile; a
ticker thread sends it when it is due (and, after a restart, whatever was left). Failing,
recovered, at-risk and drained messages are due at once and never merged or dropped.

Secrets never leave the sink in an error's text: every exception raised out of it is a
`NotifyError` whose text passed through `web.scrub` with the service's secrets.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import digest
from forge_syncd.events.sinks.notify.delivery import Delivery, Looks, Service
from forge_syncd.events.sinks.notify.rules import MessageRules
from forge_syncd.events.sinks.notify.state import NotifyState
from forge_syncd.events.sinks.notify.web import NotifyError, scrub

__all__ = ["BACKLOG_S", "DEFAULTS", "RESULTS", "NotifySink", "Service"]

# A new state file reads the events of this long before it (the first sync of a fresh
# install starts before the sink is built); older ones are history, not news.
BACKLOG_S = 3600.0
TICK_IDLE_S = 60.0
TICK_BACKOFF_MAX_S = 300.0
DEFAULTS: dict[str, Any] = {
    "min_interval_s": 300.0,
    "failing_after": 2,
    "at_risk_after_s": 1800.0,
    "timeout_s": 10.0,
    "attach": True,
    "prompt": True,
}
# What forge_sync_notifications_total{result} counts: a message delivered; a 429; a form the
# service refused (a plainer one is tried next); an attempt that failed otherwise.
RESULTS = ("sent", "rate_limited", "refused", "failed")


class NotifySink:
    """A notification sink over one `Service` (see the module doc)."""

    def __init__(
        self,
        name: str,
        options: dict[str, Any],
        service: Service,
        clock: Callable[[], float] = time.time,
    ) -> None:
        options = {**DEFAULTS, **options}
        if not options.get("state_dir"):
            raise ValueError(f"notification sink {name!r} needs state_dir for its state file")
        self.name = name
        self.clock = clock
        path = Path(options["state_dir"]) / "notify" / f"{name}.sqlite"
        self.state = NotifyState(path, clock(), BACKLOG_S)
        attach = bool(options["attach"]) and service.attach_max > 0
        self.rules = MessageRules(
            state=self.state,
            when=frozenset(options.get("when") or digest.KINDS),
            min_interval_s=float(options["min_interval_s"]),
            failing_after=int(options["failing_after"]),
            at_risk_after_s=float(options["at_risk_after_s"]),
            attach_limit=service.attach_max if attach else 0,
            clock=clock,
        )
        looks = Looks(attach, bool(options["prompt"]), options.get("gallery_url"))
        self.delivery = Delivery(name, service, self.state, looks, clock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name=f"notify-{name}", daemon=True)
        self._ticker.start()

    @property
    def counts(self) -> Counter[str]:
        """What forge_sync_notifications_total{result} counts (`RESULTS`)."""
        return self.delivery.counts

    # -- the Sink interface -----------------------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        """Given an event, apply it and send every message due. Raise NotifyError (text
        free of secrets) when one could not be delivered: call again later."""
        try:
            self.apply(event)
            self.flush()
        except NotifyError as exc:
            raise self.delivery.scrubbed(exc) from None
        except Exception as exc:
            text = scrub(f"{type(exc).__name__}: {exc}", self.delivery.secrets())
            raise NotifyError(text[:500]) from None

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._ticker.is_alive() and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        self.state.close()

    def pending(self) -> int:
        """Return how many messages wait in the sink's own outbox."""
        return self.state.outbox.count()

    def apply(self, event: dict[str, Any]) -> None:
        """Apply an event to the state, once (`rules.py`); wake the ticker when it put a
        message in the outbox."""
        if self.rules.apply(event):
            self._wake.set()

    def flush(self) -> None:
        """Send every message due, in order (`Delivery.flush`)."""
        self.delivery.flush()

    # -- the ticker ---------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        """Send messages when they become due (min_interval) and retry them when no event
        comes to do it, with its own backoff (1 s doubling to 5 min) and the service's
        wait."""
        failures, retry_at = 0, 0.0
        while not self._stop.is_set():
            now = self.clock()
            due = self.state.outbox.next_due()
            wait = TICK_IDLE_S if due is None else due - now
            wait = max(wait, self.delivery.not_before - now, retry_at - now)
            if wait > 0:
                self._wake.wait(min(wait, TICK_IDLE_S))
                self._wake.clear()
                continue
            try:
                self.flush()
                failures, retry_at = 0, 0.0
            except Exception as exc:
                failures += 1
                delay = min(TICK_BACKOFF_MAX_S, 2.0 ** (failures - 1))
                retry_at = self.clock() + delay
                self.delivery.log.warning(
                    "notification_failed",
                    error=self.delivery.clean(exc),
                    attempt=failures,
                    retry_in_s=delay,
                )
