"""A fake Discord webhook for tests, following
Discord's "Execute Webhook"
(https://discord.com/developers/docs/resources/webhook#execute-webhook) and "Rate Limits"
(docs/topics/rate-limits): POST /api/webhooks/<id>/<token>[?wait=true], JSON or
multipart/form-data with `payload_json` and `files[n]`; `content` up to 2000 characters, up to
10 embeds (title 256, description 4096, 6000 characters in all), one of content, embeds or files
required (50006 "Cannot send an empty message"); 204 without `wait`, the message object with it;
uploads of 10 MiB at most (40005). 429: JSON `{"message", "retry_after", "global"}` with
Retry-After and X-RateLimit-* headers. `pings` lists, per message, the mentions that would
notify people, after `allowed_mentions` (by default every @everyone, @here, <@id> and <@&id>
pings).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.notify_services.base import MIB, FakeService, Reply, Request, Upload

MENTION = re.compile(r"@everyone|@here|<@!?(\d+)>|<@&(\d+)>")

DISCORD_TOKEN = "fake-webhook-token"  # the fake's own credential: nothing real


def discord_pings(content: str, allowed: dict[str, Any] | None) -> list[str]:
    """Return the mentions in `content` that would notify someone under `allowed`
    (Discord's allowed_mentions object; None: everything allowed)."""
    parse = set(allowed.get("parse", [])) if allowed is not None else {"users", "roles", "everyone"}
    users = set(allowed.get("users", [])) if allowed is not None else set()
    roles = set(allowed.get("roles", [])) if allowed is not None else set()
    pings = []
    for match in MENTION.finditer(content):
        if match[0] in ("@everyone", "@here"):
            allowed_here = "everyone" in parse
        elif match[1] is not None:
            allowed_here = "users" in parse or match[1] in users
        else:
            allowed_here = "roles" in parse or match[2] in roles
        if allowed_here:
            pings.append(match[0])
    return pings


class DiscordFake(FakeService):
    """A Discord webhook (see the module doc) at /api/webhooks/`webhook_id`/`token`."""

    name = "discord"

    def __init__(
        self,
        webhook_id: str = "112233445566778899",
        token: str = DISCORD_TOKEN,
        max_upload: int = 10 * MIB,
    ) -> None:
        super().__init__()
        self.webhook_id = webhook_id
        self.token = token
        self.max_upload = max_upload
        self.pings: list[list[str]] = []

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/api/webhooks/{self.webhook_id}/{self.token}"

    @staticmethod
    def error(status: int, code: int, message: str, **extra: Any) -> Reply:
        return Reply(status, {"message": message, "code": code, **extra})

    def failure(self, status: int, retry_after: float | None) -> Reply:
        if status == 429:
            wait = 1.0 if retry_after is None else retry_after
            return Reply(
                429,
                {"message": "You are being rate limited.", "retry_after": wait, "global": False},
                {
                    "Retry-After": str(max(1, round(wait))),
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{wait:.3f}",
                    "X-RateLimit-Bucket": "fakebucket",
                    "X-RateLimit-Scope": "shared",
                },
            )
        return self.error(status, 0, "500: Internal Server Error")

    def answer(self, request: Request) -> Reply:
        match = re.fullmatch(r"/api(?:/v\d+)?/webhooks/([^/]+)/([^/]+)", request.path)
        if request.method != "POST" or match is None:
            return self.error(404, 0, "404: Not Found")
        if match[1] != self.webhook_id:
            return self.error(404, 10015, "Unknown Webhook")
        if match[2] != self.token:
            return self.error(401, 50027, "Invalid Webhook Token")
        if "payload_json" in request.form:
            try:
                payload = json.loads(request.form["payload_json"])
            except ValueError:
                return self.error(400, 50109, "The request body contains invalid JSON.")
        elif isinstance(request.json, dict):
            payload = request.json
        elif request.form:
            payload = dict(request.form)
        else:
            return self.error(400, 50109, "The request body contains invalid JSON.")
        files = {name: upload for name, upload in request.files.items() if name.startswith("file")}
        if sum(len(upload.data) for upload in files.values()) > self.max_upload:
            return self.error(413, 40005, "Request entity too large")
        problem = self._invalid(payload, files)
        if problem is not None:
            return problem
        content = str(payload.get("content") or "")
        message = {
            "id": str(10**17 + self.next_id()),
            "type": 0,
            "content": content,
            "channel_id": "998877665544332211",
            "webhook_id": self.webhook_id,
            "embeds": payload.get("embeds") or [],
            "attachments": [
                {"id": str(n), "filename": upload.filename, "size": len(upload.data)}
                for n, upload in enumerate(files.values())
            ],
            "username": payload.get("username"),
            "files": files,
        }
        self.messages.append(message)
        self.pings.append(discord_pings(content, payload.get("allowed_mentions")))
        if request.query.get("wait", "").lower() in ("true", "1"):
            return Reply(200, {k: v for k, v in message.items() if k != "files"})
        return Reply(204)

    def _invalid(self, payload: dict[str, Any], files: dict[str, Upload]) -> Reply | None:
        content = payload.get("content")
        embeds = payload.get("embeds") or []
        errors: dict[str, Any] = {}
        if content is not None and (not isinstance(content, str) or len(content) > 2000):
            errors["content"] = {
                "_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}
                ]
            }
        if not isinstance(embeds, list) or len(embeds) > 10:
            errors["embeds"] = {
                "_errors": [
                    {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 10 or fewer in length."}
                ]
            }
        else:
            total = 0
            for n, embed in enumerate(embeds):
                if not isinstance(embed, dict):
                    errors[f"embeds.{n}"] = {
                        "_errors": [
                            {
                                "code": "MODEL_TYPE_CONVERT",
                                "message": "Only dictionaries may be used in a ModelType",
                            }
                        ]
                    }
                    continue
                for key, limit in (("title", 256), ("description", 4096)):
                    value = str(embed.get(key) or "")
                    total += len(value)
                    if len(value) > limit:
                        errors[f"embeds.{n}.{key}"] = {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": f"Must be {limit} or fewer in length.",
                                }
                            ]
                        }
            if total > 6000:
                errors["embeds"] = {
                    "_errors": [
                        {
                            "code": "MAX_EMBED_SIZE_EXCEEDED",
                            "message": "Embed size exceeds maximum size of 6000",
                        }
                    ]
                }
        if errors:
            return self.error(400, 50035, "Invalid Form Body", errors=errors)
        if not content and not embeds and not files and not payload.get("poll"):
            return self.error(400, 50006, "Cannot send an empty message")
        return None
