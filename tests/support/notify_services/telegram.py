"""A fake Telegram Bot API server for tests, following
the Bot API (https://core.telegram.org/bots/api: "Making requests", sendMessage, sendPhoto,
sendDocument, "Formatting options", ResponseParameters): /bot<token>/<method> by GET or POST,
parameters in the query, urlencoded, JSON or multipart; answers `{"ok": true, "result": ...}` or
`{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`; text 1-4096 and
captions up to 1024 characters after the markup is parsed, which
tests/support/telegram_markup.py checks as Telegram does ("Bad Request: can't parse entities:
..."); photos 10 MB, documents 50 MB.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.support.notify_services.base import FakeService, Reply, Request, Upload
from tests.support.telegram_markup import MarkupError, render

TELEGRAM_TOKEN = "123456:FAKE-token_x"  # the fake's own credential: nothing real


class TelegramFake(FakeService):
    """A Telegram Bot API server (see the module doc) for bot `token`; `chats` are the chat
    ids it knows (others: "chat not found")."""

    name = "telegram"

    def __init__(self, token: str = TELEGRAM_TOKEN, chats: tuple[int, ...] = (424242,)) -> None:
        super().__init__()
        self.token = token
        self.chats = set(chats)

    @staticmethod
    def error(code: int, description: str, **parameters: Any) -> Reply:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return Reply(code, body)

    def failure(self, status: int, retry_after: float | None) -> Reply:
        if status == 429:
            wait = max(1, round(1.0 if retry_after is None else retry_after))
            return self.error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        return self.error(status, "Internal Server Error")

    @property
    def api_url(self) -> str:
        return f"{self.url}/bot{self.token}"

    def answer(self, request: Request) -> Reply:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", request.path)
        if match is None:
            return self.error(404, "Not Found")
        if match[1] != self.token:
            return self.error(401, "Unauthorized")
        params = dict(request.query)
        params.update(request.form)
        if isinstance(request.json, dict):
            params.update(
                {k: v if isinstance(v, str) else json.dumps(v) for k, v in request.json.items()}
            )
        method = match[2].lower()
        if method == "getme":
            return Reply(
                200,
                {
                    "ok": True,
                    "result": {
                        "id": int(self.token.split(":")[0]),
                        "is_bot": True,
                        "first_name": "forge-test",
                        "username": "forge_test_bot",
                    },
                },
            )
        if method not in ("sendmessage", "sendphoto", "senddocument"):
            return self.error(404, "Not Found: method not found")
        chat = params.get("chat_id", "")
        if not chat:
            return self.error(400, "Bad Request: chat_id is empty")
        if not chat.lstrip("-").isdigit() or int(chat) not in self.chats:
            return self.error(400, "Bad Request: chat not found")
        if method == "sendmessage":
            return self._text(int(chat), params)
        return self._media(int(chat), params, request.files, method)

    def _rendered(self, text: str, params: dict[str, str]) -> str | Reply:
        try:
            return render(text, params.get("parse_mode") or None)
        except MarkupError as exc:
            return self.error(400, f"Bad Request: {exc}")

    def _text(self, chat: int, params: dict[str, str]) -> Reply:
        rendered = self._rendered(params.get("text", ""), params)
        if isinstance(rendered, Reply):
            return rendered
        if not rendered.strip():
            return self.error(400, "Bad Request: message text is empty")
        if len(rendered) > 4096:
            return self.error(400, "Bad Request: message is too long")
        return self._sent(chat, {"text": rendered}, params)

    def _media(
        self, chat: int, params: dict[str, str], files: dict[str, Upload], method: str
    ) -> Reply:
        kind, limit = ("photo", 10 * 10**6) if method == "sendphoto" else ("document", 50 * 10**6)
        upload = files.get(kind)
        if upload is None and not params.get(kind):
            return self.error(400, f"Bad Request: there is no {kind} in the request")
        if upload is not None and len(upload.data) > limit:
            return self.error(400, "Bad Request: file is too big")
        caption = self._rendered(params.get("caption", ""), params)
        if isinstance(caption, Reply):
            return caption
        if len(caption) > 1024:
            return self.error(400, "Bad Request: message caption is too long")
        size = len(upload.data) if upload is not None else 0
        media = {"file_id": f"fake-file-{self.next_id()}", "file_size": size}
        fields: dict[str, Any] = {kind: [media] if kind == "photo" else media}
        if caption:
            fields["caption"] = caption
        sent = self._sent(chat, fields, params)
        if upload is not None:
            self.messages[-1]["upload"] = upload
        return sent

    def _sent(self, chat: int, fields: dict[str, Any], params: dict[str, str]) -> Reply:
        message = {
            "message_id": self.next_id(),
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            **fields,
        }
        self.messages.append({**message, "parse_mode": params.get("parse_mode")})
        return Reply(200, {"ok": True, "result": message})
