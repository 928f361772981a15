"""The watched-files path of a sync run: the plan for the files a live watcher reported
complete, made from their manifest rows and local copies only, without a listing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forge_syncd.jobs.record import JobContext
from forge_syncd.library import localfs
from forge_syncd.library.copies import CheckedCopies
from forge_syncd.library.manifest import FileState
from forge_syncd.library.safety import copy_intact
from forge_syncd.mtimes import FUTURE_SLACK_NS
from forge_syncd.paths import display
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import RemoteFile
from forge_syncd.sync.plan import SyncPlan, plan_sync


def plan_changed(
    ctx: JobContext,
    files: list[RemoteFile],
    seen_future: Mapping[bytes, tuple[int, int]] | None,
    log: Any,
) -> SyncPlan | None:
    """Given the files a live watcher reported complete and the files from the future the
    last look saw, return the plan for those a listing would hold (inside `folders`, wanted
    by include/exclude), or None when there is none. A file the plan finds unchanged costs
    nothing."""
    container = ctx.container
    sync = container.sync
    scope = Scope.of(container)
    wanted = [f for f in files if scope.holds(f.path)]
    log.debug("watch_sync", paths=[display(f.path) for f in wanted[:100]])
    if not wanted:
        return None
    ctx.remote.prepare_fetch()  # its shell starts while the plan is made
    records = ctx.manifest.files.records_at(container.name, [f.path for f in wanted])
    base = ctx.container_dir + b"/"
    mismatched = {
        path
        for path, record in records.items()
        if record.state == FileState.SYNCED
        and not copy_intact(record.size, localfs.local_size(base + path))
    }
    now_ns = ctx.remote.probe().clock.now_ns()
    return plan_sync(
        wanted,
        records,
        CheckedCopies(ctx.container_dir, records, mismatched),
        None,
        now_ns,
        # The watcher saw them complete: ready, unless far ahead of the container's
        # clock (then the two-look rule for files from the future applies).
        -FUTURE_SLACK_NS,
        sync.max_file_size,
        forget=sync.on_local_delete == "forget",
        seen_future=seen_future,
    )
