"""A fake Gotify server for tests, following
Gotify's push API (https://gotify.net/docs/pushmsg, gotify/server's api/message.go and
auth/authentication.go): POST /message with the application token as `?token=` or the
X-Gotify-Key header; JSON (with `extras`, e.g. client::display contentType text/markdown) or a
form; `message` required, `title`, `priority` (the app's default when absent); errors `{"error",
"errorCode", "errorDescription"}`.
"""

from __future__ import annotations

import time
from http import HTTPStatus

from tests.support.notify_services.base import FakeService, Reply, Request

GOTIFY_TOKEN = "AFakeAppToken.1"  # the fake's own credential: nothing real


class GotifyFake(FakeService):
    """A Gotify server (see the module doc) with one application of `app_token`."""

    name = "gotify"

    def __init__(self, app_token: str = GOTIFY_TOKEN, default_priority: int = 0) -> None:
        super().__init__()
        self.app_token = app_token
        self.default_priority = default_priority

    @staticmethod
    def error(status: int, description: str) -> Reply:
        return Reply(
            status,
            {
                "error": HTTPStatus(status).phrase,
                "errorCode": status,
                "errorDescription": description,
            },
        )

    def failure(self, status: int, retry_after: float | None) -> Reply:
        reply = self.error(status, "injected failure")
        if status == 429 and retry_after is not None:
            reply.headers["Retry-After"] = str(max(1, round(retry_after)))
        return reply

    def answer(self, request: Request) -> Reply:
        if request.path != "/message" or request.method != "POST":
            return self.error(404, "page not found")
        token = request.query.get("token") or request.headers.get("x-gotify-key")
        if not token:
            return self.error(
                401,
                "you need to provide a valid access token or user credentials to access this api",
            )
        if token != self.app_token:
            return self.error(
                401,
                "you need to provide a valid access token or user credentials to access this api",
            )
        body = request.json if isinstance(request.json, dict) else dict(request.form)
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return self.error(
                400,
                "Key: 'MessageExternal.Message' Error:Field validation for 'Message' failed on the 'required' tag",
            )
        priority = body.get("priority", self.default_priority)
        try:
            priority = int(priority)
        except (TypeError, ValueError):
            return self.error(400, "strconv.ParseInt: parsing priority: invalid syntax")
        record = {
            "id": self.next_id(),
            "appid": 1,
            "message": message,
            "title": str(body.get("title") or ""),
            "priority": priority,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if isinstance(body.get("extras"), dict):
            record["extras"] = body["extras"]
        self.messages.append(record)
        return Reply(200, record)
