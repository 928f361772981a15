"""Event sinks: every sink is a small class with one shape, found by type.

A sink is built as `Sink(name, options)` and has `deliver(event) -> None`, which returns
only once the event is safely delivered and raises anything on failure (the dispatcher
retries the same event, with backoff), and `close() -> None`. Built-in types: jsonl, exec,
webhook, catalog, postgres, the notification sinks ntfy, discord, telegram, gotify
(`notify/`) and `mirror` (`mirror/`), which keep their own state under `state_dir`; type
`python` loads a factory with that signature from the entry point group `forge_syncd.sinks`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from forge_syncd.config.model import SinkConfig

ENTRY_POINT_GROUP = "forge_syncd.sinks"


class Sink(Protocol):
    def deliver(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def load_sink(config: SinkConfig, state_dir: Path | None = None) -> Sink:
    """Given a sink's config (and the daemon's state_dir, where a notification sink keeps
    its state), return the sink. Raise LookupError for an unknown entry point."""
    from forge_syncd.events.sinks import catalog, command, jsonl, postgres, webhook
    from forge_syncd.events.sinks.notify import NOTIFY_TYPES, notify_sink

    if config.type in NOTIFY_TYPES:
        return notify_sink(config.type, config.name, {**config.options, "state_dir": state_dir})
    if config.type == "mirror":
        from forge_syncd.events.sinks.mirror import mirror_sink

        return mirror_sink(config.name, {**config.options, "state_dir": state_dir})
    builtins: dict[str, Any] = {
        "jsonl": jsonl.JsonlSink,
        "exec": command.ExecSink,
        "webhook": webhook.WebhookSink,
        "catalog": catalog.CatalogSink,
        "postgres": postgres.PostgresSink,
    }
    if config.type in builtins:
        sink: Sink = builtins[config.type](config.name, config.options)
        return sink
    wanted = config.options["entry_point"]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == wanted:
            factory = entry.load()
            loaded: Sink = factory(config.name, dict(config.options.get("options", {})))
            return loaded
    raise LookupError(f"no entry point {wanted!r} in group {ENTRY_POINT_GROUP}")
