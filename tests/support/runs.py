"""Run one sync of a container in-process, the way the tests need it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.progress import Progress
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.transport import Transport
from forge_syncd.sync import SyncState, sync_container
from forge_syncd.transports.ssh.session import RemoteSession
from forge_syncd.transports.ssh.transport import SshTransport


def context(
    container: ContainerConfig,
    media: Path | bytes,
    manifest: Manifest,
    remote: Transport,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> JobContext:
    """Return the JobContext of one run, the way a runner builds it."""
    return JobContext(
        container,
        os.fsencode(media),
        manifest,
        remote,
        progress or Progress(),
        cancel or threading.Event(),
    )


def run_sync(container: ContainerConfig, media: Path, state: Path) -> RunOutcome:
    """Sync `container` once into `media` with the manifest in `state`; return the outcome."""
    manifest = Manifest.open(state)
    remote = SshTransport(container)
    try:
        return sync_container(context(container, media, manifest, remote))
    finally:
        remote.close()
        manifest.close()


class Poller:
    """Sync one container again and again on one session (one connection), the way the
    daemon polls it, with the manifest kept open."""

    def __init__(self, container: ContainerConfig, media: Path, state: Path) -> None:
        self.container = container
        self.media = os.fsencode(media)
        self.manifest = Manifest.open(state)
        self.remote = SshTransport(container)
        self.state = SyncState()

    @property
    def session(self) -> RemoteSession:
        return self.remote.session

    def sync(self) -> RunOutcome:
        ctx = context(self.container, self.media, self.manifest, self.remote)
        return sync_container(ctx, self.state)

    def close(self) -> None:
        self.remote.close()
        self.manifest.close()
