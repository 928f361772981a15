"""Sending a notification sink's outbox through its service, each message at least once.

A message's text is made when it is sent, from its data (`notice`). Retry-After: a 429 sets
`not_before`; until then the service is not called and `flush` raises `RetryLater` (with
the wait left in `retry_after_s`) at once, so however the caller backs off, the service's
own wait is never cut short.

A refused message (400, 413, ... : its content or its attachment) is tried again without
the attachment, then as its bare headline in plain text; only when even that is refused is
it an error, and then it stays in the outbox (a bad token or chat id is fixed, not
dropped). Errors are told with the service's secrets scrubbed (`clean`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from forge_syncd.events.sinks.notify import digest
from forge_syncd.events.sinks.notify.attachments import read_attachment, read_prompt
from forge_syncd.events.sinks.notify.outbox import Pending
from forge_syncd.events.sinks.notify.render import Attachment, Notice
from forge_syncd.events.sinks.notify.state import NotifyState
from forge_syncd.events.sinks.notify.web import NotifyError, Refused, RetryLater, scrub
from forge_syncd.logs import get_logger


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


@dataclasses.dataclass(frozen=True)
class Looks:
    """How a sink's messages look: attach the image, show its prompt, link the gallery."""

    attach: bool
    prompt: bool
    link: str | None


class Delivery:
    """Sends the due messages of one sink's outbox through its service (see the module
    doc); `counts` are what forge_sync_notifications_total{result} counts. Thread-safe."""

    def __init__(
        self,
        name: str,
        service: Service,
        state: NotifyState,
        looks: Looks,
        clock: Callable[[], float],
    ) -> None:
        self.service = service
        self.state = state
        self.looks = looks
        self.clock = clock
        self.log = get_logger(sink=name)
        self.counts: Counter[str] = Counter()  # sent, failed, rate_limited, refused
        self.not_before = 0.0
        self._lock = threading.Lock()

    def flush(self) -> None:
        """Send every message due, in order. Raise RetryLater while a service's wait
        lasts, NotifyError when a message could not be delivered (it stays, and the ones
        after it wait)."""
        with self._lock:
            for message in self.state.outbox.due(self.clock()):
                wait = self.not_before - self.clock()
                if wait > 0:
                    raise RetryLater(
                        f"{self.service.what} asked to wait: next try in {wait:.0f} s", wait
                    )
                self._send(message)

    def _send(self, message: Pending) -> None:
        notice = self.notice(message)
        self.state.outbox.attempted(message.seq)
        try:
            service_id = self._send_forms(notice)
        except RetryLater as exc:
            self.counts["rate_limited"] += 1
            self.not_before = self.clock() + (exc.retry_after_s or 0.0)
            raise
        except NotifyError:
            self.counts["failed"] += 1
            raise
        self.state.outbox.delivered(message, self.clock(), service_id)
        self.counts["sent"] += 1
        self.log.info("notification_sent", kind=message.kind, key=message.key)

    def _send_forms(self, notice: Notice) -> str | None:
        """Send a notice as richly as the service takes it (see the module doc)."""
        attachment = None
        if self.looks.attach and notice.image is not None:
            attachment = read_attachment(notice.image, self.service.attach_max)
        try:
            return self.service.send(notice, attachment, rich=True)
        except Refused as exc:
            self.counts["refused"] += 1
            self.log.warning("notification_refused", key=notice.key, error=self.clean(exc))
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
        body, key, link = message.body, message.key, self.looks.link
        if message.kind == "landed":
            containers = body["containers"]
            image = digest.image_of(containers)
            prompt = read_prompt(image.local) if image is not None and self.looks.prompt else None
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

    # -- secrets ------------------------------------------------------------------------------
    def secrets(self) -> list[str]:
        """Return the service's secrets ([] when it cannot say)."""
        try:
            return self.service.secrets()
        except Exception:
            return []

    def clean(self, exc: Exception) -> str:
        """Return an error's text, bounded, with the service's secrets scrubbed."""
        return scrub(f"{exc}", self.secrets())[:500]

    def scrubbed(self, exc: NotifyError) -> NotifyError:
        """Return the same kind of error, its text `clean`."""
        text = self.clean(exc)
        if isinstance(exc, RetryLater):
            return RetryLater(text, exc.retry_after_s)
        return type(exc)(text)
