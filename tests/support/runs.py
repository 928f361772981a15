"""Run one sync of a container in-process, the way the tests need it."""

from __future__ import annotations

import os
from pathlib import Path

from forge_syncd.config.model import ContainerConfig
from forge_syncd.manifest import Manifest
from forge_syncd.remote.session import RemoteSession
from forge_syncd.runs import RunOutcome
from forge_syncd.sync import sync_container


def run_sync(container: ContainerConfig, media: Path, state: Path) -> RunOutcome:
    """Sync `container` once into `media` with the manifest in `state`; return the outcome."""
    manifest = Manifest.open(state)
    session = RemoteSession(container)
    try:
        return sync_container(container, os.fsencode(media), manifest, session)
    finally:
        session.close()
        manifest.close()


class Poller:
    """Sync one container again and again on one session (one connection), the way the
    daemon polls it, with the manifest kept open."""

    def __init__(self, container: ContainerConfig, media: Path, state: Path) -> None:
        self.container = container
        self.media = os.fsencode(media)
        self.manifest = Manifest.open(state)
        self.session = RemoteSession(container)

    def sync(self) -> RunOutcome:
        return sync_container(self.container, self.media, self.manifest, self.session)

    def close(self) -> None:
        self.session.close()
        self.manifest.close()
