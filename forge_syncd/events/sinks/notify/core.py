"""The notification sink: events in, messages out, each at least once.

`deliver(event)` first applies the event to the sink's own state (`state.py`) in one
transaction — run totals, container health, messages put in the sink's outbox — then sends
what is due. It returns only when nothing due is left unsent; it raises (`web.NotifyError`)
when the service did not take a message, and the dispatcher calls it again with the same
event after its backoff: that event is already applied (its id and time are recorded), so
the retry only sends. A landed message waits in the outbox for `min_interval` after the last
one, gathering the runs that land meanwhile; a ticker thread sends it when it is due (and,
after a restart, whatever was left). Failing, recovered, at-risk and drained messages are
due at once and never merged or dropped.

Retry-After: a 429 sets `not_before`; until then the sink does not call the service and
`deliver` raises `RetryLater` (with the wait left in `retry_after_s`) at once, so however
the dispatcher backs off, the service's own wait is never cut short.

A refused message (400, 413, ... : its content or its attachment) is tried again without
the attachment, then as its bare headline in plain text; only when even that is refused is
it an error, and then it stays in the outbox (a bad token or chat id is fixed, not
dropped).

Secrets never leave the sink in an error's text: every exception raised out of it is a
`NotifyError` whose text passed through `web.scrub` with the service's secrets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from forge_syncd.events.sinks.notify import digest
from forge_syncd.events.sinks.notify.render import Attachment, ImageRef, Notice
from forge_syncd.events.sinks.notify.state import NotifyState, Pending
from forge_syncd.events.sinks.notify.web import NotifyError, Refused, RetryLater, scrub
from forge_syncd.logs import get_logger

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
MAGIC: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
)


class Service(Protocol):
    """One notification service: how a notice becomes its request."""

    what: str  # how messages name it: "ntfy", "Discord", ...
    attach_max: int  # the largest attachment it takes, in bytes (0: none)

    def secrets(self) -> list[str]:
        """Return the secrets its requests carry (to scrub from errors); [] if unread."""
        ...

    def send(self, notice: Notice, attachment: Attachment | None, rich: bool) -> str | None:
        """Send one notice (with markup when `rich`); return the service's id for the
        message, if it gives one. Raise Refused, RetryLater or NotifyError."""
        ...


def read_attachment(image: ImageRef, limit: int) -> Attachment | None:
    """Given a landed image and the service's size limit, return its bytes to upload, or
    None when it is gone, larger than the limit, or not a PNG, JPEG, GIF or WebP by its
    first bytes (whatever its name says: the container chose the name)."""
    try:
        fd = os.open(image.local, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not (0 < info.st_size <= limit) or not os.path.isfile(image.local):
            return None
        data = b""
        while len(data) < info.st_size:
            chunk = os.read(fd, min(1 << 20, info.st_size - len(data)))
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    for magic, offset, mime, extension in MAGIC:
        if data[offset : offset + len(magic)] == magic:
            from forge_syncd.events.sinks.notify.render import safe_filename

            return Attachment(safe_filename(image.path, extension), mime, data)
    return None


def read_prompt(local: bytes) -> str | None:
    """Return the prompt embedded in a landed image, or None (read within the catalog's
    bounds: never raises)."""
    from forge_syncd.events.metadata import read_generation_info

    try:
        return read_generation_info(local).prompt
    except Exception:  # the reader promises not to raise; a notification never depends on it
        return None


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
        self.service = service
        self.when = frozenset(options.get("when") or digest.KINDS)
        self.min_interval_s = float(options["min_interval_s"])
        self.failing_after = int(options["failing_after"])
        self.at_risk_after_s = float(options["at_risk_after_s"])
        self.link: str | None = options.get("gallery_url")
        self.attach = bool(options["attach"]) and service.attach_max > 0
        self.prompt = bool(options["prompt"])
        self.clock = clock
        self.log = get_logger(sink=name)
        self.counts: Counter[str] = Counter()  # sent, failed, rate_limited, refused
        self.not_before = 0.0
        path = Path(options["state_dir"]) / "notify" / f"{name}.sqlite"
        self.state = NotifyState(path, clock(), BACKLOG_S)
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name=f"notify-{name}", daemon=True)
        self._ticker.start()

    # -- the Sink interface -----------------------------------------------------------------
    def deliver(self, event: dict[str, Any]) -> None:
        """Given an event, apply it and send every message due. Raise NotifyError (text
        free of secrets) when one could not be delivered: call again later."""
        try:
            self.apply(event)
            self.flush()
        except NotifyError as exc:
            raise self._scrubbed(exc) from None
        except Exception as exc:
            text = scrub(f"{type(exc).__name__}: {exc}", self._secrets())
            raise NotifyError(text[:500]) from None

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._ticker.is_alive() and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)
        self.state.close()

    def pending(self) -> int:
        """Return how many messages wait in the sink's own outbox."""
        return self.state.pending_count()

    # -- events -------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """Apply an event to the state, once: a second delivery of it changes nothing."""
        event_id, ts = event.get("id"), event.get("ts")
        keyed = isinstance(event_id, int) and isinstance(ts, str)
        woke = False
        with self.state.transaction() as db:
            if keyed and self.state.was_applied(db, int(event_id), str(ts)):  # type: ignore[arg-type]
                return
            since = float(self.state.meta(db, "since") or 0)
            moment = digest.epoch(ts)
            if moment is None or moment >= since:
                woke = self._take(db, event)
            if keyed:
                self.state.mark_applied(db, int(event_id), str(ts))  # type: ignore[arg-type]
        if woke:
            self._wake.set()

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
                limit = self.service.attach_max if self.attach else 0
                digest.add_file(totals, event, limit)
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
            self.state.enqueue(db, "drained", self.clock(), {"event": _small(event)})
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
        draft = self.state.open_draft(db, "landed")
        if draft is not None:
            containers = draft.body["containers"]
            before = containers.get(container)
            containers[container] = digest.merge(before, totals) if before else totals
            self.state.update_body(db, draft.seq, draft.body)
            return False
        now = self.clock()
        due = max(now, float(self.state.meta(db, "landed_at") or 0) + self.min_interval_s)
        waiting = self.state.last_due(db, "landed")
        if waiting is not None:
            due = max(due, waiting + self.min_interval_s)
        self.state.enqueue(db, "landed", due, {"containers": {container: totals}})
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
        self.state.enqueue(db, change, self.clock(), body)
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
            self.state.drop_unsent(db, "at_risk", container)
            return False
        if "at_risk" not in self.when:
            return False
        now = self.clock()
        seen = digest.epoch(event.get("ts")) or now
        oldest_at = seen - float(oldest)  # type: ignore[arg-type]
        due = max(now, oldest_at + self.at_risk_after_s)
        body = {"container": container, "files": files, "bytes": nbytes, "oldest_at": oldest_at}
        self.state.enqueue(db, "at_risk", due, body)
        return True

    # -- sending ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Send every message due, in order. Raise RetryLater while a service's wait
        lasts, NotifyError when a message could not be delivered (it stays, and the ones
        after it wait)."""
        with self._send_lock:
            for message in self.state.due(self.clock()):
                wait = self.not_before - self.clock()
                if wait > 0:
                    raise RetryLater(
                        f"{self.service.what} asked to wait: next try in {wait:.0f} s", wait
                    )
                self._send(message)

    def _send(self, message: Pending) -> None:
        notice = self.notice(message)
        self.state.attempted(message.seq)
        try:
            service_id = self._send_forms(notice)
        except RetryLater as exc:
            self.counts["rate_limited"] += 1
            self.not_before = self.clock() + (exc.retry_after_s or 0.0)
            raise
        except NotifyError:
            self.counts["failed"] += 1
            raise
        self.state.delivered(message, self.clock(), service_id)
        self.counts["sent"] += 1
        self.log.info("notification_sent", kind=message.kind, key=message.key)

    def _send_forms(self, notice: Notice) -> str | None:
        """Send a notice as richly as the service takes it (see the module doc)."""
        attachment = None
        if self.attach and notice.image is not None:
            attachment = read_attachment(notice.image, self.service.attach_max)
        try:
            return self.service.send(notice, attachment, rich=True)
        except Refused as exc:
            self.counts["refused"] += 1
            self.log.warning("notification_refused", key=notice.key, error=self._clean(exc))
        if attachment is not None:
            with contextlib.suppress(Refused):
                return self.service.send(notice, None, rich=True)
        bare = dataclasses.replace(notice, details=(), image=None)
        try:
            return self.service.send(bare, None, rich=False)
        except Refused as exc:
            raise NotifyError(f"{exc}, even as plain text: the message waits") from None

    def notice(self, message: Pending) -> Notice:
        """Given a message of the outbox, return its text (made now, from its data)."""
        body, key, link = message.body, message.key, self.link
        if message.kind == "landed":
            containers = body["containers"]
            image = digest.image_of(containers)
            prompt = read_prompt(image.local) if image is not None and self.prompt else None
            return digest.landed_notice(containers, key, link, prompt)
        container = str(body.get("container") or body.get("event", {}).get("container") or "")
        if message.kind == "failing":
            return digest.failing_notice(container, body["failures"], body["error"], key, link)
        if message.kind == "recovered":
            return digest.recovered_notice(
                container, body["failures"], body.get("failing_for_s"), key, link
            )
        if message.kind == "at_risk":
            age = max(0.0, self.clock() - float(body["oldest_at"]))
            files, nbytes = int(body["files"]), int(body["bytes"])
            return digest.at_risk_notice(container, files, nbytes, age, key, link)
        return digest.drained_notice(body["event"], key, link)

    # -- the ticker ---------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        """Send messages when they become due (min_interval) and retry them when no event
        comes to do it, with its own backoff (1 s doubling to 5 min) and the service's
        wait."""
        failures, retry_at = 0, 0.0
        while not self._stop.is_set():
            now = self.clock()
            due = self.state.next_due()
            wait = TICK_IDLE_S if due is None else due - now
            wait = max(wait, self.not_before - now, retry_at - now)
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
                self.log.warning(
                    "notification_failed",
                    error=self._clean(exc),
                    attempt=failures,
                    retry_in_s=delay,
                )

    # -- secrets --------------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        try:
            return self.service.secrets()
        except Exception:
            return []

    def _clean(self, exc: Exception) -> str:
        return scrub(f"{exc}", self._secrets())[:500]

    def _scrubbed(self, exc: NotifyError) -> NotifyError:
        text = self._clean(exc)
        if isinstance(exc, RetryLater):
            return RetryLater(text, exc.retry_after_s)
        return type(exc)(text)


def _small(event: dict[str, Any]) -> dict[str, Any]:
    """The fields of an event a message may use (bounded: events are read, not trusted)."""
    return {
        key: (value[:2000] if isinstance(value, str) else value)
        for key, value in event.items()
        if key in ("container", "safe", "files", "bytes", "unsafe_count", "error", "oldest_s")
        and (value is None or isinstance(value, str | int | float | bool))
    }
