"""Notification sinks: `ntfy`, `discord`, `telegram`, `gotify` (SPEC "Sinks round 3").

Each is a `core.NotifySink` over one service module (`ntfy.py`, `discord.py`,
`telegram.py`, `gotify.py`: how a notice becomes that service's request). What they say is
decided in `digest.py` and written safely for each markup in `render.py`; `rules.py` says
which event puts which message in the outbox (`outbox.py`), `delivery.py` sends them (with
the image `attachments.py` reads); `state.py` keeps what must survive a crash; `secrets.py`
reads tokens from files; `web.py` is the HTTP.
"""

from __future__ import annotations

from typing import Any

from forge_syncd.events.sinks.notify.core import NotifySink, Service
from forge_syncd.events.sinks.notify.discord import Discord
from forge_syncd.events.sinks.notify.gotify import Gotify
from forge_syncd.events.sinks.notify.ntfy import Ntfy
from forge_syncd.events.sinks.notify.telegram import Telegram

SERVICES: dict[str, type[Ntfy] | type[Discord] | type[Telegram] | type[Gotify]] = {
    "ntfy": Ntfy,
    "discord": Discord,
    "telegram": Telegram,
    "gotify": Gotify,
}
NOTIFY_TYPES = frozenset(SERVICES)


def notify_sink(sink_type: str, name: str, options: dict[str, Any]) -> NotifySink:
    """Given a notification sink's type, name and options (with `state_dir`), return the
    sink. Raise ValueError without `state_dir`."""
    service: Service = SERVICES[sink_type](options)
    return NotifySink(name, options, service)
