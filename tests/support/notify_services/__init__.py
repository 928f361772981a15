"""Fake notification services for tests: real HTTP servers on 127.0.0.1 that speak the APIs
of ntfy, Discord webhooks, the Telegram Bot API and Gotify as their documentation describes.

Each fake is a `ThreadingHTTPServer` on a free port in a thread of its own (`start()`,
`stop()`, a context manager; `url` is its base URL). It records every request (`requests`:
method, path, query, headers, body, and the body parsed as JSON, a form or multipart fields
and files), answers as the service would (status, headers, JSON), and keeps what a reader of
the service would see (`messages`). `fail_next(count, status=429, retry_after=...)` makes the
next requests fail the way the service fails (its 429 body and headers, a 500, or status 0: the
connection is closed without an answer); `go_down()` and `come_up()` close and reopen the
listener on the same port (connection refused in between). `wait_for(n)` waits until n
requests came (a test's own timeout, never an assertion on time).

Each service is a module of its own here, whose doc says what of the service's documentation it
follows: `ntfy.NtfyFake`, `discord.DiscordFake`, `telegram.TelegramFake` (markup checked by
tests/support/telegram_markup.py), `gotify.GotifyFake`; `base.FakeService` is what they share.
"""

from tests.support.notify_services.base import FakeService, Reply, Request, Upload
from tests.support.notify_services.discord import DiscordFake, discord_pings
from tests.support.notify_services.gotify import GotifyFake
from tests.support.notify_services.ntfy import NtfyFake
from tests.support.notify_services.telegram import TelegramFake

__all__ = [
    "DiscordFake",
    "FakeService",
    "GotifyFake",
    "NtfyFake",
    "Reply",
    "Request",
    "TelegramFake",
    "Upload",
    "discord_pings",
]
