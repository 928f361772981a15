"""Gotify (https://gotify.net/docs/pushmsg): a POST of JSON `{"title", "message",
"priority", "extras"}` to `<url>/message`, the application token in the `X-Gotify-Key`
header (never in the URL, where proxies log it). Plain text (`client::display` contentType
text/plain: nothing in a name is markup); the gallery link, when there is one, is also the
notification's click target. Gotify takes no attachments and has no idempotency key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import web
from forge_syncd.events.sinks.notify.render import Attachment, Notice, clip, shrink
from forge_syncd.events.sinks.notify.secrets import SecretFile

MAX_MESSAGE = 4096
PRIORITY = {"failing": 8, "at_risk": 8}
DEFAULT_PRIORITY = 5


class Gotify:
    what = "Gotify"
    attach_max = 0

    def __init__(self, options: dict[str, Any]) -> None:
        self.url = str(options["url"]).rstrip("/")
        self.token = SecretFile(Path(options["token_file"]), "token_file")
        self.timeout_s = float(options.get("timeout_s", 10.0))

    def secrets(self) -> list[str]:
        return [self.token.value()]

    def send(self, notice: Notice, attachment: Attachment | None, rich: bool) -> str | None:
        """Post one notice; return Gotify's message id."""
        notice = shrink(notice, lambda n: len(n.body()) <= MAX_MESSAGE)
        extras: dict[str, Any] = {"client::display": {"contentType": "text/plain"}}
        if notice.link:
            extras["client::notification"] = {"click": {"url": notice.link}}
        payload = {
            "title": clip(notice.title, 250),
            "message": notice.body(),
            "priority": PRIORITY.get(notice.kind, DEFAULT_PRIORITY),
            "extras": extras,
        }
        secrets = self.secrets()
        headers = {"Content-Type": "application/json", "X-Gotify-Key": secrets[0]}
        answer = web.send(
            "POST", f"{self.url}/message", json.dumps(payload).encode(), headers, self.timeout_s,
            secrets, self.what,
        )  # fmt: skip
        web.judge(answer, self.what)
        found = answer.json()
        return str(found["id"])[:100] if isinstance(found, dict) and "id" in found else None
