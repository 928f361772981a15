"""Discord (https://discord.com/developers/docs/resources/webhook#execute-webhook): a POST to
the webhook URL (`?wait=true`, so the answer is the message and a failure is said), JSON
`{"content", "allowed_mentions"}`, or multipart with `payload_json` and the image as
`files[0]`. Content is Discord markdown with every special character of the text escaped
(`render.discord_text`) and at most 2,000 characters; `allowed_mentions: {"parse": []}`
makes sure no name in a message pings anyone. The webhook URL (it holds the token) comes
from `webhook_url_file`. Discord has no idempotency key for webhooks: a crash in the
instant between Discord's answer and our record of it posts the message again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import web
from forge_syncd.events.sinks.notify.render import (
    Attachment,
    Notice,
    discord_text,
    shrink,
    utf16_len,
)
from forge_syncd.events.sinks.notify.secrets import SecretFile

MAX_CONTENT = 2000
ATTACH_MAX = 10 * 1024 * 1024  # a webhook's upload limit (the server's boost may allow more)
NO_PINGS: dict[str, list[str]] = {"parse": []}


class Discord:
    what = "Discord"

    def __init__(self, options: dict[str, Any]) -> None:
        self.webhook = SecretFile(Path(options["webhook_url_file"]), "webhook_url_file")
        self.timeout_s = float(options.get("timeout_s", 10.0))
        self.attach_max = int(options.get("attach_max", ATTACH_MAX))
        self.username = options.get("username")

    def secrets(self) -> list[str]:
        url = self.webhook.value()
        return [url, url.rstrip("/").rsplit("/", 1)[-1]]

    def send(self, notice: Notice, attachment: Attachment | None, rich: bool) -> str | None:
        """Post one notice (markdown escaped when `rich`, else as plain text in a code-free
        form); return Discord's message id."""
        render = discord_text if rich else _plain
        notice = shrink(notice, lambda n: utf16_len(render(n)) <= MAX_CONTENT)
        payload: dict[str, Any] = {"content": render(notice), "allowed_mentions": NO_PINGS}
        if self.username:
            payload["username"] = str(self.username)
        if not rich:
            payload["flags"] = 4  # SUPPRESS_EMBEDS: no link previews
        url = self.webhook.value()
        target = url + ("&" if "?" in url else "?") + "wait=true"
        if attachment is not None:
            payload["attachments"] = [{"id": 0, "filename": attachment.name}]
            body, kind = web.multipart(
                [("payload_json", json.dumps(payload), "application/json")],
                [("files[0]", attachment.name, attachment.mime, attachment.data)],
            )
        else:
            body, kind = json.dumps(payload).encode(), "application/json"
        answer = web.send(
            "POST", target, body, {"Content-Type": kind}, self.timeout_s, self.secrets(), self.what
        )
        web.judge(answer, self.what)
        found = answer.json()
        return str(found["id"])[:100] if isinstance(found, dict) and "id" in found else None


def _plain(notice: Notice) -> str:
    """The last resort form: Discord markdown still applies to content, so it is escaped
    all the same; only the bold title goes."""
    from forge_syncd.events.sinks.notify.render import discord_escape

    lines = [discord_escape(line) for line in notice.plain(link=False).split("\n")]
    if notice.link:
        lines.append(notice.link)
    return "\n".join(lines)
