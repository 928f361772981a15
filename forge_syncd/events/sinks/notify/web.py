"""HTTP for the notification sinks: one request, its answer read within bounds, and what the
answer means for delivery.

`send` never follows a redirect (a POST carrying a token is not re-sent elsewhere) and never
lets a transport error's text out unscrubbed: a URL can hold a secret (a Discord webhook's
token, a Telegram bot token), so every error message passes through `scrub` with the
secrets of the request. `judge` maps an answer to the outcome: 2xx delivered; 429 is
`RetryLater` with the service's own wait (Retry-After, Discord's `retry_after`, Telegram's
`parameters.retry_after`); 400/413/415/422 is `Refused` (this message's content or
attachment: a plainer form may pass); anything else, or no answer, is `NotifyError` (retry
the same message later).
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from forge_syncd import __version__
from forge_syncd.events.sinks.notify.render import clean
from forge_syncd.events.sinks.webhook import NoRedirects

MAX_ANSWER = 1024 * 1024  # bytes of a service's answer read at most
MAX_RETRY_AFTER_S = 3600.0  # a longer wait asked for is taken as this
REFUSED_STATUSES = frozenset({400, 413, 415, 422})


class NotifyError(Exception):
    """The message was not delivered; try it again later. The text holds no secret."""


class RetryLater(NotifyError):
    """The service asked us to wait (429): `retry_after_s` seconds, when it said so. A
    dispatcher that honours it waits at least that long before the next attempt."""

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Refused(NotifyError):
    """The service refused this message as it was written (too large, bad markup, a bad
    attachment): a plainer form of it may pass."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None


_OPENER = urllib.request.build_opener(NoRedirects())  # a token is never re-sent elsewhere


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Return `text` with every secret (and its URL-quoted form) replaced by "***"."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(urllib.parse.quote(secret, safe=""), "***")
    return text


def send(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    secrets: Iterable[str] = (),
    what: str = "the service",
) -> Answer:
    """Given a request, send it and return the answer (any status). Raise NotifyError when
    no answer came (refused, reset, timed out, a bad URL), its text scrubbed of `secrets`
    and naming the service as `what`, never by its URL."""
    request = urllib.request.Request(  # noqa: S310 - http(s) URLs, checked by the config
        url,
        data=body,
        method=method,
        headers={"User-Agent": f"forge-syncd/{__version__}", **headers},
    )
    try:
        try:
            with _OPENER.open(request, timeout=timeout_s) as response:
                data = response.read(MAX_ANSWER)
                return Answer(response.status, _headers(response.headers), data)
        except urllib.error.HTTPError as exc:
            with exc:
                data = exc.read(MAX_ANSWER) if exc.fp is not None else b""
                return Answer(exc.code, _headers(exc.headers), data)
    except Exception as exc:  # any transport failure: its text may quote the URL
        reason = getattr(exc, "reason", None) or exc
        text = scrub(clean(f"{type(exc).__name__}: {reason}", 300), list(secrets))
        raise NotifyError(f"{what} did not answer: {text}") from None


def _headers(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers.items() if headers else [])}


def retry_after_s(answer: Answer) -> float | None:
    """Return how long a 429 asked us to wait, in seconds (at most MAX_RETRY_AFTER_S), from
    the JSON body (`retry_after`, `parameters.retry_after`) or the Retry-After header
    (seconds or an HTTP date); None when it said nothing usable."""
    body = answer.json()
    candidates: list[Any] = []
    if isinstance(body, dict):
        candidates.append(body.get("retry_after"))
        parameters = body.get("parameters")
        if isinstance(parameters, dict):
            candidates.append(parameters.get("retry_after"))
    header = answer.headers.get("retry-after", "").strip()
    candidates.append(header)
    for value in candidates:
        seconds = _seconds(value)
        if seconds is not None:
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value == value and value < 1e12 else None
    if not isinstance(value, str) or not value:
        return None
    try:
        return float(value[:32])
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value[:64])
    except (TypeError, ValueError, IndexError):
        return None
    return moment.timestamp() - time.time()


def description(answer: Answer) -> str:
    """Return what the service said about an error, short and inert: the JSON field each
    service uses (`error`, `message`, `description`, `errorDescription`), else the status."""
    body = answer.json()
    if isinstance(body, dict):
        for key in ("description", "errorDescription", "error", "message"):
            if isinstance(body.get(key), str) and body[key]:
                return clean(body[key], 200)
    return f"HTTP {answer.status}"


def judge(answer: Answer, what: str) -> None:
    """Given a service's answer, return if it means delivered (2xx). Raise RetryLater (429),
    Refused (400, 413, 415, 422) or NotifyError (anything else)."""
    if 200 <= answer.status < 300:
        return
    said = description(answer)
    if answer.status == 429:
        wait = retry_after_s(answer)
        asked = f"; it asks to wait {wait:g} s" if wait is not None else ""
        raise RetryLater(f"{what} is rate-limiting (429: {said}){asked}", wait)
    if answer.status in REFUSED_STATUSES:
        raise Refused(f"{what} refused the message ({answer.status}: {said})")
    raise NotifyError(f"{what} answered {answer.status}: {said}")


def multipart(
    fields: list[tuple[str, str, str]], files: list[tuple[str, str, str, bytes]]
) -> tuple[bytes, str]:
    """Given form fields (name, value, content type) and files (name, file name, content
    type, bytes), return a multipart/form-data body and its Content-Type. Names and file
    names must be safe ASCII (the callers make them so)."""
    boundary = f"forge-syncd-{uuid.uuid4().hex}"
    parts = []
    for name, value, kind in fields:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for name, filename, kind, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
