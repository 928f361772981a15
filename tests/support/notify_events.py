"""Events as the daemon's outbox hands them to a notification sink, and sinks wired to the
fake services (tests/support/notify_services), for the notification tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forge_syncd.events.sinks.notify import SERVICES
from forge_syncd.events.sinks.notify.core import NotifySink
from tests.support.notify_services import DiscordFake, FakeService, GotifyFake, TelegramFake
from tests.support.notify_services.gotify import GOTIFY_TOKEN
from tests.support.notify_services.telegram import TELEGRAM_TOKEN

NTFY_TOKEN = "tk_secret_ntfy_0123456789"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + ".000Z"


class Events:
    """Makes events with increasing ids, stamped at `clock()`."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.ids = itertools.count(1)
        self.clock = clock

    def base(self, kind: str, container: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": next(self.ids),
            "type": kind,
            "ts": iso(self.clock()),
            "container": container,
            **fields,
        }

    def landed_run(
        self,
        container: str,
        run_id: str,
        files: list[tuple[str, Path, int]],
        span_s: float = 240.0,
    ) -> list[dict[str, Any]]:
        """Return the events of a successful sync that landed `files` ((path, local, size)),
        their mtimes spread over `span_s`, then its sync_complete."""
        events = []
        for n, (path, local, size) in enumerate(files):
            moment = 1.7e9 + span_s * n / max(1, len(files) - 1)
            events.append(
                self.base(
                    "file_synced",
                    container,
                    run_id=run_id,
                    path=path,
                    local_path=str(local),
                    size=size,
                    mtime=iso(moment).replace(".000Z", ".000000Z"),
                    sha256="0" * 64,
                )
            )
        events.append(self.sync_complete(container, run_id, "success", len(files)))
        return events

    def sync_complete(
        self, container: str, run_id: str, result: str, files: int = 0, error: str | None = None
    ) -> dict[str, Any]:
        return self.base(
            "sync_complete",
            container,
            run_id=run_id,
            result=result,
            files=files,
            bytes=0,
            duration_s=1.0,
            error=error,
        )


def secret_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def service_options(kind: str, fake: FakeService, folder: Path) -> dict[str, Any]:
    """The options of a sink of `kind` that reaches `fake`, its secret in a file."""
    if kind == "ntfy":
        return {"url": f"{fake.url}/forge", "token_file": secret_file(folder, "n", NTFY_TOKEN)}
    if kind == "discord":
        assert isinstance(fake, DiscordFake)
        return {"webhook_url_file": secret_file(folder, "d", fake.webhook_url)}
    if kind == "telegram":
        assert isinstance(fake, TelegramFake)
        token = secret_file(folder, "t", TELEGRAM_TOKEN)
        return {"bot_token_file": token, "chat_id": "424242", "api_url": fake.url}
    assert isinstance(fake, GotifyFake)
    return {"url": fake.url, "token_file": secret_file(folder, "g", GOTIFY_TOKEN)}


def secrets_of(kind: str, fake: FakeService) -> list[str]:
    """The secrets a sink of `kind` holds for `fake` (none may appear in a log)."""
    if kind == "ntfy":
        return [NTFY_TOKEN]
    if kind == "discord":
        assert isinstance(fake, DiscordFake)
        return [fake.token]
    return [TELEGRAM_TOKEN if kind == "telegram" else GOTIFY_TOKEN]


def make_sink(
    kind: str,
    fake: FakeService,
    folder: Path,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> NotifySink:
    """A notification sink of `kind` sending to `fake`, its state under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    merged = {**service_options(kind, fake, folder), "state_dir": folder / "state", **options}
    return NotifySink(kind, merged, SERVICES[kind](merged), clock=clock)
