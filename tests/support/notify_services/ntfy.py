"""A fake ntfy server for tests, following
ntfy's publishing docs (https://docs.ntfy.sh/publish/, docs/publish.md of binwiederhier/ntfy)
and its server's error table (server/errors.go): PUT or POST to /<topic> (topic
`[-_A-Za-z0-9]{1,64}`), or a JSON body POSTed to / with a `topic` field; parameters from headers
(or the query), each with its aliases: X-Title/Title/ti/t, X-Priority/Priority/prio/p (1-5 or
min/low/default/high/max/urgent), X-Tags/Tags/tag/ta, X-Click/Click, X-Attach/Attach/a,
X-Filename/Filename/file/f, X-Message/Message/m, X-Markdown/Markdown/md, X-Icon/Icon,
X-Sequence-ID/Sequence-ID/sid (ntfy 2.16+, "Updating notifications": a message with the
sequence id of an earlier one replaces it on the reader's screen; `shown()`); header
values may be RFC 2047 encoded. A body with a filename, over 4,096 bytes or not UTF-8 is an
attachment (15 MB at most: 413 beyond), and then the message text comes from X-Message. Access
token: `Authorization: Bearer`. Errors are JSON `{"code", "http", "error", "link"}` (42901 for
too many requests; ntfy sends no Retry-After, so the fake sends one only when asked).
"""

from __future__ import annotations

import re
import time
from typing import Any

from tests.support.notify_services.base import FakeService, Reply, Request

NTFY_PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "max": 5, "urgent": 5}
NTFY_ALIASES = {
    "title": ("x-title", "title", "ti", "t"),
    "priority": ("x-priority", "priority", "prio", "p"),
    "tags": ("x-tags", "tags", "tag", "ta"),
    "click": ("x-click", "click"),
    "attach": ("x-attach", "attach", "a"),
    "filename": ("x-filename", "filename", "file", "f"),
    "message": ("x-message", "message", "m"),
    "markdown": ("x-markdown", "markdown", "md"),
    "icon": ("x-icon", "icon"),
    "sequence_id": ("x-sequence-id", "sequence-id", "sequence_id", "sid"),
}


class NtfyFake(FakeService):
    """An ntfy server (see the module doc). `token`: the access token the topics require
    (None: open); `max_message` and `max_attachment` bytes."""

    name = "ntfy"

    def __init__(
        self, token: str | None = None, max_message: int = 4096, max_attachment: int = 15 * 10**6
    ) -> None:
        super().__init__()
        self.token = token
        self.max_message = max_message
        self.max_attachment = max_attachment

    def shown(self) -> list[dict[str, Any]]:
        """Return the notifications a subscriber sees: one per sequence id (the latest
        message of it, in the place of the first), one per message without one."""
        seen: dict[str, int] = {}
        shown: list[dict[str, Any]] = []
        for message in self.messages:
            sequence = message.get("sequence_id")
            if sequence is not None and sequence in seen:
                shown[seen[sequence]] = message
                continue
            if sequence is not None:
                seen[sequence] = len(shown)
            shown.append(message)
        return shown

    @staticmethod
    def error(code: int, status: int, text: str, link: str = "") -> Reply:
        return Reply(status, {"code": code, "http": status, "error": text, "link": link})

    def failure(self, status: int, retry_after: float | None) -> Reply:
        if status == 429:
            reply = self.error(
                42901,
                429,
                "limit reached: too many requests",
                "https://ntfy.sh/docs/publish/#limitations",
            )
            if retry_after is not None:
                reply.headers["Retry-After"] = str(max(1, round(retry_after)))
            return reply
        return self.error(50001, status, "internal server error")

    def answer(self, request: Request) -> Reply:
        if request.method not in ("POST", "PUT"):
            return self.error(40401, 404, "page not found")
        auth = request.headers.get("authorization", "")
        if self.token is not None and auth != f"Bearer {self.token}":
            if auth:
                return self.error(
                    40101, 401, "unauthorized", "https://ntfy.sh/docs/publish/#authentication"
                )
            return self.error(
                40301, 403, "forbidden", "https://ntfy.sh/docs/publish/#authentication"
            )
        if request.path == "/" and isinstance(request.json, dict):
            return self._publish_json(request.json)
        topic = request.path.strip("/")
        if not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", topic):
            return self.error(40010, 400, "invalid request: topic invalid")
        fields = {key: request.param(*names) for key, names in NTFY_ALIASES.items()}
        return self._publish(topic, fields, request.body)

    def _publish_json(self, body: dict[str, Any]) -> Reply:
        topic = body.get("topic")
        if not isinstance(topic, str) or not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", topic):
            return self.error(40010, 400, "invalid request: topic invalid")
        fields = {key: body.get(key) for key in NTFY_ALIASES}
        if isinstance(fields["tags"], list):
            fields["tags"] = ",".join(map(str, fields["tags"]))
        if fields["priority"] is not None:
            fields["priority"] = str(fields["priority"])
        message = body.get("message")
        return self._publish(topic, fields, str(message).encode() if message is not None else b"")

    def _publish(self, topic: str, fields: dict[str, Any], body: bytes) -> Reply:
        priority = 3
        if fields["priority"]:
            text = str(fields["priority"]).strip().lower()
            if text in NTFY_PRIORITIES:
                priority = NTFY_PRIORITIES[text]
            elif text.isdigit() and 1 <= int(text) <= 5:
                priority = int(text)
            else:
                return self.error(40007, 400, "invalid request: priority invalid")
        message: dict[str, Any] = {
            "id": f"fake{self.next_id():08d}",
            "time": int(time.time()),
            "event": "message",
            "topic": topic,
        }
        is_text = True
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
        if fields["filename"] or len(body) > self.max_message or not is_text:
            if len(body) > self.max_attachment:
                return self.error(
                    41301, 413, "too large: attachment too large, or bandwidth limit reached"
                )
            name = fields["filename"] or "attachment.bin"
            message["attachment"] = {
                "name": name,
                "size": len(body),
                "url": f"{self.url}/file/{message['id']}",
            }
            message["message"] = fields["message"] or f"You received a file: {name}"
            message["attachment_bytes"] = body
        else:
            message["message"] = fields["message"] or text_body or "triggered"
        if fields["title"]:
            message["title"] = fields["title"]
        if fields["tags"]:
            message["tags"] = [tag.strip() for tag in fields["tags"].split(",") if tag.strip()]
        if priority != 3:
            message["priority"] = priority
        for key in ("click", "attach", "icon", "sequence_id"):
            if fields[key]:
                message[key] = fields[key]
        if fields["markdown"] and str(fields["markdown"]).lower() in ("yes", "true", "1"):
            message["content_type"] = "text/markdown"
        self.messages.append(message)
        return Reply(200, {k: v for k, v in message.items() if k != "attachment_bytes"})
