"""Telegram (https://core.telegram.org/bots/api): `sendMessage` (JSON: chat_id, text,
parse_mode HTML, link previews off) or, with an image, `sendPhoto` (multipart: chat_id,
caption, parse_mode, photo). Text is HTML with every <, > and & of it escaped
(`render.telegram_html`); a message at most 4,096 characters and a caption 1,024, as
Telegram counts them (UTF-16, after the markup). The bot token comes from
`bot_token_file`; `api_url` is Telegram's (or a local Bot API server's). Telegram has no
idempotency key: a crash in the instant between Telegram's answer and our record of it
posts the message again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import web
from forge_syncd.events.sinks.notify.render import (
    Attachment,
    Notice,
    shrink,
    telegram_html,
    utf16_len,
)
from forge_syncd.events.sinks.notify.secrets import SecretFile

TEXT = "text/plain; charset=utf-8"
API_URL = "https://api.telegram.org"
MAX_TEXT = 4096
MAX_CAPTION = 1024
ATTACH_MAX = 10 * 10**6  # sendPhoto's limit


class Telegram:
    what = "Telegram"

    def __init__(self, options: dict[str, Any]) -> None:
        self.token = SecretFile(Path(options["bot_token_file"]), "bot_token_file")
        self.chat_id = str(options["chat_id"])
        self.api_url = str(options.get("api_url") or API_URL).rstrip("/")
        self.timeout_s = float(options.get("timeout_s", 10.0))
        self.attach_max = int(options.get("attach_max", ATTACH_MAX))

    def secrets(self) -> list[str]:
        return [self.token.value()]

    def send(self, notice: Notice, attachment: Attachment | None, rich: bool) -> str | None:
        """Send one notice (HTML when `rich`, else plain text); return the message id."""
        limit = MAX_CAPTION if attachment is not None else MAX_TEXT
        # What Telegram counts is the text after the markup is parsed: the plain text.
        notice = shrink(notice, lambda n: utf16_len(n.plain()) <= limit)
        text = telegram_html(notice) if rich else notice.plain()
        mode = {"parse_mode": "HTML"} if rich else {}
        secrets = self.secrets()
        base = f"{self.api_url}/bot{secrets[0]}"
        if attachment is not None:
            fields = [("chat_id", self.chat_id, TEXT), ("caption", text, TEXT)]
            fields += [("parse_mode", mode["parse_mode"], TEXT)] if mode else []
            body, kind = web.multipart(
                fields, [("photo", attachment.name, attachment.mime, attachment.data)]
            )
            url = f"{base}/sendPhoto"
        else:
            payload = {
                "chat_id": self.chat_id,
                "text": text,
                "link_preview_options": {"is_disabled": True},
                **mode,
            }
            body, kind = json.dumps(payload).encode(), "application/json"
            url = f"{base}/sendMessage"
        headers = {"Content-Type": kind}
        answer = web.send("POST", url, body, headers, self.timeout_s, secrets, self.what)
        web.judge(answer, self.what)
        found = answer.json()
        result = found.get("result") if isinstance(found, dict) else None
        if isinstance(result, dict) and "message_id" in result:
            return str(result["message_id"])[:100]
        return None
