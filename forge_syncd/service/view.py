"""What the control answers (`service/api.py`, `onboard/`) see of the running daemon: its
containers, scheduler, manifest, sinks and events, and the two things they may ask of it (a
reload, a container's status). `service/daemon.Daemon` is the one implementation; the
answers depend on this Protocol, not on the daemon's module, so the daemon imports them
and not the other way round."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from forge_syncd.config import Config, ContainerConfig
    from forge_syncd.events.dispatcher import Dispatcher
    from forge_syncd.library.manifest import Manifest
    from forge_syncd.service.runner import ContainerRunner
    from forge_syncd.service.scheduler import JobScheduler


class DaemonView(Protocol):
    """The running daemon, as a control request sees it.

    `started`: set once the configured containers are added (requests wait for it);
    `stop_requested`: set when the daemon stops; `onboard_lock`: held by `add` and `remove`
    while they write a drop-in and reload; `first_triggers`: what the first sync of a
    container being added counts as started by; `discovered`: what each `discover:` source
    found last, by index."""

    config: Config
    config_path: Path
    runners: dict[str, ContainerRunner]
    scheduler: JobScheduler
    manifest: Manifest
    dispatcher: Dispatcher
    started: threading.Event
    stop_requested: threading.Event
    started_at: datetime
    onboard_lock: threading.Lock
    first_triggers: dict[str, str]
    discovered: dict[int, list[ContainerConfig]]

    def reload(self) -> dict[str, Any]:
        """Re-read the config; return the control socket's `reload` result."""
        ...

    def status(self, runner: ContainerRunner) -> dict[str, Any]:
        """Return `runner`'s container as `status` shows it."""
        ...
