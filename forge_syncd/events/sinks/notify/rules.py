"""What events put in a notification sink's outbox (SPEC "Sinks round 3").

Files synced add to their run's totals; a `sync_complete` turns the container's runs into a
landed message (one waits in the outbox for `min_interval` after the last one went, and the
runs that land meanwhile join it) and steps its health (failing, recovered); `media_at_risk`
says "at risk" once per spell; `drain_complete` says drained. Every rule runs inside the
state's transaction that records the event as applied, so a redelivered event changes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forge_syncd.events.sinks.notify import digest
from forge_syncd.events.sinks.notify.state import NotifyState


@dataclass(frozen=True)
class MessageRules:
    """The rules of one sink, over its state: which kinds it says (`when`), how long a
    landed message waits, after how many failed syncs a container is failing, and how old
    media only on a container is at risk. `attach_limit`: the largest image a landed
    message keeps as its picture (0: none)."""

    state: NotifyState
    when: frozenset[str]
    min_interval_s: float
    failing_after: int
    at_risk_after_s: float
    attach_limit: int
    clock: Callable[[], float]

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply an event to the state, once: a second delivery of it changes nothing.
        Return True when it put a message in the outbox."""
        event_id, ts = event.get("id"), event.get("ts")
        keyed = isinstance(event_id, int) and isinstance(ts, str)
        woke = False
        with self.state.transaction() as db:
            if keyed and self.state.was_applied(db, int(event_id), str(ts)):  # type: ignore[arg-type]
                return False
            since = float(self.state.meta(db, "since") or 0)
            moment = digest.epoch(ts)
            if moment is None or moment >= since:
                woke = self._take(db, event)
            if keyed:
                self.state.mark_applied(db, int(event_id), str(ts))  # type: ignore[arg-type]
        return woke

    def _take(self, db: Any, event: dict[str, Any]) -> bool:
        """Apply one event; return True when it put a message in the outbox."""
        kind = event.get("type")
        container = str(event.get("container") or "")
        run_id = str(event.get("run_id") or "")
        if kind in ("file_synced", "file_versioned"):
            if run_id in digest.QUIET_RUNS or event.get("adopted") is True:
                return False
            totals = self.state.run(db, container, run_id) or digest.new_run()
            if kind == "file_synced":
                digest.add_file(totals, event, self.attach_limit)
            else:
                totals["versioned"] += 1
            self.state.save_run(db, container, run_id, totals)
            return False
        if kind == "sync_complete":
            landed = self._landed(db, container)
            return self._health(db, container, event) or landed
        if kind == "media_at_risk":
            return self._at_risk(db, container, event)
        if kind == "drain_complete" and "drained" in self.when:
            self.state.outbox.enqueue(db, "drained", self.clock(), {"event": _small(event)})
            return True
        return False

    def _landed(self, db: Any, container: str) -> bool:
        """A sync ended: its files (and those of any run of this container that ended
        without a summary, a crash) join the landed message."""
        runs = self.state.take_runs(db, container)
        if not runs:
            return False
        totals = runs[0]
        for more in runs[1:]:
            totals = digest.merge(totals, more)
        if totals["files"] == 0 or "landed" not in self.when:
            return False
        outbox = self.state.outbox
        draft = outbox.open_draft(db, "landed")
        if draft is not None:
            containers = draft.body["containers"]
            before = containers.get(container)
            containers[container] = digest.merge(before, totals) if before else totals
            outbox.update_body(db, draft.seq, draft.body)
            return False
        now = self.clock()
        due = max(now, float(self.state.meta(db, "landed_at") or 0) + self.min_interval_s)
        waiting = outbox.last_due(db, "landed")
        if waiting is not None:
            due = max(due, waiting + self.min_interval_s)
        outbox.enqueue(db, "landed", due, {"containers": {container: totals}})
        return True

    def _health(self, db: Any, container: str, event: dict[str, Any]) -> bool:
        failures, since = self.state.health(db, container)
        ts = str(event.get("ts") or "")
        result = str(event.get("result") or "")
        after, since_after, change = digest.health_step(
            failures, since, result, ts, self.failing_after
        )
        self.state.set_health(db, container, after, since_after)
        if change is None or change not in self.when:
            return False
        body: dict[str, Any] = {"container": container}
        if change == "failing":
            body |= {"failures": after, "error": str(event.get("error") or "")[:2000]}
        else:
            began, ended = digest.epoch(since), digest.epoch(ts)
            span = ended - began if began is not None and ended is not None else None
            body |= {"failures": failures, "failing_for_s": span}
        self.state.outbox.enqueue(db, change, self.clock(), body)
        return True

    def _at_risk(self, db: Any, container: str, event: dict[str, Any]) -> bool:
        """`media_at_risk` (the daemon's check, `events/at_risk.py`): media only on the
        container is said once when its oldest file is older than `at_risk_after` (a
        message due when that age is reached: the daemon says it at the smallest threshold
        of all sinks); said again only after the container was clear in between (a clear
        state drops a message not sent yet)."""
        files, nbytes, oldest = event.get("files"), event.get("bytes"), event.get("oldest_s")
        values = (files, nbytes, oldest)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        over = event.get("at_risk") is True and numbers and float(files) > 0  # type: ignore[arg-type]
        said = self.state.at_risk_said(db, container)
        if over == said:
            return False
        self.state.set_at_risk_said(db, container, over)
        if not over:
            self.state.outbox.drop_unsent(db, "at_risk", container)
            return False
        if "at_risk" not in self.when:
            return False
        now = self.clock()
        seen = digest.epoch(event.get("ts")) or now
        oldest_at = seen - float(oldest)  # type: ignore[arg-type]
        due = max(now, oldest_at + self.at_risk_after_s)
        body = {"container": container, "files": files, "bytes": nbytes, "oldest_at": oldest_at}
        self.state.outbox.enqueue(db, "at_risk", due, body)
        return True


def _small(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event a message may use (bounded: events are read, not trusted)."""
    return {
        key: (value[:2000] if isinstance(value, str) else value)
        for key, value in event.items()
        if key in ("container", "safe", "files", "bytes", "unsafe_count", "error", "oldest_s")
        and (value is None or isinstance(value, str | int | float | bool))
    }
