"""ntfy (https://docs.ntfy.sh/publish/): a message is a POST of its text to the topic URL,
with the title, tags, priority and click link in headers; a message with an image is a PUT
of the image's bytes with the text in `X-Message` and its name in `X-Filename`.

Headers never carry a raw line break or a non-ASCII byte: every value that holds text goes
through `render.header_value` (RFC 2047 encoded words, which ntfy decodes), bounded. Each
message carries its key as `X-Sequence-ID` (ntfy 2.16+): a second post with the same key,
after a crash between ntfy's answer and our record of it, updates the notification already
shown instead of adding one (an older server shows both). The access token, if any, is sent
as `Authorization: Bearer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import web
from forge_syncd.events.sinks.notify.render import (
    Attachment,
    Notice,
    clip,
    header_value,
    shrink,
)
from forge_syncd.events.sinks.notify.secrets import SecretFile

MAX_MESSAGE = 4096  # bytes: a longer body is stored as an attachment, not shown as text
# ntfy.sh's free tier takes attachments up to 2 MB (a self-hosted server: its
# attachment-file-size-limit, 15 MB by default).
ATTACH_MAX = 2 * 10**6
TAGS = {
    "landed": "framed_picture",
    "failing": "warning",
    "recovered": "white_check_mark",
    "at_risk": "rotating_light",
    "drained": "checkered_flag",
}
PRIORITY = {"failing": "4", "at_risk": "4"}


class Ntfy:
    what = "ntfy"

    def __init__(self, options: dict[str, Any]) -> None:
        self.url = str(options["url"]).rstrip("/")
        token_file = options.get("token_file")
        self.token = SecretFile(Path(token_file), "token_file") if token_file else None
        self.timeout_s = float(options.get("timeout_s", 10.0))
        self.attach_max = int(options.get("attach_max", ATTACH_MAX))

    def secrets(self) -> list[str]:
        return [self.token.value()] if self.token is not None else []

    def send(self, notice: Notice, attachment: Attachment | None, rich: bool) -> str | None:
        """POST (or PUT with the image) one notice; return ntfy's message id."""
        notice = shrink(notice, lambda n: len(n.body(link=False).encode()) <= MAX_MESSAGE)
        text = notice.body(link=False)
        headers = {
            "Title": header_value(clip(notice.title, 250), 400),
            "Tags": TAGS.get(notice.kind, "bell"),
            "X-Sequence-ID": notice.key,
        }
        if notice.kind in PRIORITY:
            headers["Priority"] = PRIORITY[notice.kind]
        if notice.link:
            headers["Click"] = header_value(notice.link, 2000)
        secrets = self.secrets()
        if secrets:
            headers["Authorization"] = f"Bearer {secrets[0]}"
        if attachment is not None:
            headers["X-Message"] = header_value(text, MAX_MESSAGE)
            headers["X-Filename"] = attachment.name
            headers["Content-Type"] = attachment.mime
            method, body = "PUT", attachment.data
        else:
            headers["Content-Type"] = "text/plain; charset=utf-8"
            method, body = "POST", text.encode()
        answer = web.send(method, self.url, body, headers, self.timeout_s, secrets, self.what)
        web.judge(answer, self.what)
        found = answer.json()
        return str(found["id"])[:100] if isinstance(found, dict) and "id" in found else None
