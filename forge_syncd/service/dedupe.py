"""The `dedupe` control method: one pass over the daemon's library (`library/dedupepass.py`),
in the caller's connection thread, each container's files shared only while no job of it
runs (a container busy with a run is skipped and named in the answer); and the gauge of
the bytes it saved."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from forge_syncd.control.protocol import BAD_PARAMS, BUSY, Request, RequestError
from forge_syncd.jobs.record import Busy, container_lock
from forge_syncd.library.dedupepass import DedupePass
from forge_syncd.library.manifest import Manifest
from forge_syncd.logs import get_logger

if TYPE_CHECKING:
    from forge_syncd.service.view import DaemonView

_one_pass = threading.Lock()


class PassRunning(Exception):
    """Another dedupe pass is running in this daemon."""


def dedupe_library(daemon: DaemonView, dry_run: bool) -> dict[str, Any]:
    """Run one pass (`dry_run`: only count); return its report as JSON. Raise PassRunning
    while another pass runs."""
    if not _one_pass.acquire(blocking=False):
        raise PassRunning("a dedupe pass is already running")
    try:

        @contextmanager
        def hold(name: str) -> Iterator[None]:
            runner = daemon.runners.get(name)
            lock = runner.job_lock if runner is not None else None
            if lock is not None and not lock.acquire(blocking=False):
                raise Busy(f"a run of {name} is in progress")
            try:
                with container_lock(daemon.manifest.path.parent, name):
                    yield
            finally:
                if lock is not None:
                    lock.release()

        media_root = os.fsencode(daemon.config.media_root)
        log = get_logger(job="dedupe")
        return DedupePass(daemon.manifest, media_root, log, hold).run(dry_run).to_json()
    finally:
        _one_pass.release()


class DedupeMethod:
    """The `dedupe` control method of one daemon."""

    def __init__(self, daemon: DaemonView) -> None:
        self.daemon = daemon

    def dedupe(self, request: Request) -> dict[str, Any]:
        """Share identical bytes already in the library; `dry_run` (a bool): only say what
        would be saved. Error `busy` while another pass runs."""
        dry_run = request.params.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise RequestError(BAD_PARAMS, "param 'dry_run' has the wrong type", request.id)
        try:
            return dedupe_library(self.daemon, dry_run)
        except PassRunning as exc:
            raise RequestError(BUSY, str(exc), request.id) from None


class SavedBytesCollector(Collector):
    """`forge_sync_dedupe_saved_bytes`: the bytes of library files stored as a share of
    another's blocks (the manifest's `shared_at` marks), read at every scrape."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "forge_sync_dedupe_saved_bytes",
            "Bytes of library files stored once: sharing another copy's blocks (library.dedupe).",
            value=self.manifest.shared.saved_bytes(),
        )
