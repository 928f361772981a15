"""`webhook`: POST the event as JSON; any 2xx status means delivered.

Redirects: 307 and 308 are followed with the same method and body, at most
`MAX_REDIRECTS` hops, to http(s) locations only. Any other 3xx (a 301/302/303 would
turn the POST into a body-less GET) is a failed delivery, retried like any other.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPMessage
from typing import IO, Any

from forge_syncd import __version__

MAX_REDIRECTS = 5
REPOST_STATUSES = (307, 308)


class RedirectRefused(Exception):
    """The endpoint redirected in a way we do not follow; the message says how."""


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hands every 3xx back as an HTTPError: the sink decides what to follow."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def redirect_target(url: str, status: int, location: str | None, hops: int) -> str:
    """Given the URL that answered, its 3xx status, its Location header and the hops
    taken so far, return the absolute URL to POST to next. Raise RedirectRefused for a
    status other than 307/308, a missing or non-http(s) Location, or too many hops."""
    shown = repr(location[:200]) if location is not None else "no Location"
    if status not in REPOST_STATUSES:
        raise RedirectRefused(
            f"{url} answered {status} redirect to {shown}: not followed "
            "(only 307/308 keep the POST and its body)"
        )
    if not location:
        raise RedirectRefused(f"{url} answered {status} without a Location")
    target = urllib.parse.urljoin(url, location)
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise RedirectRefused(f"{url} answered {status} redirect to {shown}: not http(s)")
    if hops >= MAX_REDIRECTS:
        raise RedirectRefused(f"{url}: more than {MAX_REDIRECTS} redirects, last to {shown}")
    return target


class WebhookSink:
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.url = str(options["url"])
        self.timeout_s = float(options.get("timeout_s", 10.0))
        self._opener = urllib.request.build_opener(NoRedirects())

    def deliver(self, event: dict[str, Any]) -> None:
        """Given an event, POST it; return once a 2xx answered (after 307/308 hops).
        Raise RedirectRefused, urllib.error.HTTPError (4xx, 5xx, other statuses) or
        OSError (the endpoint cannot be reached) otherwise."""
        body = json.dumps(event).encode()
        url = self.url
        for hops in range(MAX_REDIRECTS + 1):
            try:
                self._post(url, body, event)
                return
            except urllib.error.HTTPError as exc:
                exc.close()
                if not 300 <= exc.code < 400:
                    raise
                url = redirect_target(url, exc.code, exc.headers.get("Location"), hops)

    def _post(self, url: str, body: bytes, event: dict[str, Any]) -> None:
        request = urllib.request.Request(  # noqa: S310 - http(s), checked by config and redirect_target
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"forge-syncd/{__version__}",
                "Idempotency-Key": f"forge-syncd-{event.get('id')}",
            },
        )
        with self._opener.open(request, timeout=self.timeout_s) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{url} answered {response.status}")

    def close(self) -> None:
        pass
