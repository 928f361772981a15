"""The summary `forge-syncd --check-config` prints."""

from __future__ import annotations

from forge_syncd.cli.format import spec_duration
from forge_syncd.config.bwlimit import BwLimit
from forge_syncd.config.dropins import admin_dropin_folder, dropin_folder
from forge_syncd.config.model import Config, LibraryConfig, Schedule
from forge_syncd.text import NO_CONTAINERS, plural

__all__ = ["NO_CONTAINERS", "summarize_config"]


def _every(schedule: Schedule) -> str:
    if schedule.cron is not None:
        return f"cron '{schedule.cron}'"
    return f"every {spec_duration(schedule.interval_s or 0)}"


def summarize_config(config: Config) -> str:
    """Given a valid Config, return a few human lines describing it."""
    lines = [
        f"config {config.path}: OK, {plural(len(config.containers), 'container')}",
        f"media_root {config.media_root}   state_dir {config.state_dir}",
        _library(config.library),
    ]
    if config.limits.bwlimit is not None:
        lines.append(f"limits: bwlimit {config.limits.bwlimit.text} (all containers together)")
    for file in (config.path, *config.dropins):
        mine = sum(1 for c in config.containers if c.source == str(file))
        what = "drop-in" if file != config.path else "file"
        lines.append(f"read {what} {file}: {plural(mine, 'container')}")
    if not config.dropins:
        admin, state = admin_dropin_folder(config.path), dropin_folder(config)
        lines.append(f"drop-ins: none in {admin}/ or {state}/")
    if not config.containers:
        lines.append(NO_CONTAINERS)
    for c in config.containers:
        folders = ", ".join(c.folders) if c.folders else "(whole root)"
        cleanup = (
            f"cleanup {_every(c.cleanup.schedule)}"
            f" older than {spec_duration(c.cleanup.older_than_s)}"
            + (" (dry run)" if c.cleanup.dry_run else "")
            if c.cleanup.enabled
            else "cleanup off"
        )
        reach = "local" if c.transport == "local" else f"{c.ssh.user}@{c.host}:{c.ssh.port}"
        lines.append(f"  {c.name:<16} {c.kind:<8} {reach}  {c.root}  [{folders}]")
        lines.append(
            f"  {'':<16} sync {_every(c.sync.schedule)}, verify {c.sync.verify}, "
            f"{c.sync.transfers} transfers{_bwlimit(c.sync.bwlimit)}; {cleanup}"
        )
    for sink in config.ingest:
        lines.append(f"  ingest {sink.name} ({sink.type})")
    return "\n".join(lines)


def _bwlimit(bwlimit: BwLimit | int | None) -> str:
    if bwlimit is None:
        return ""
    return f", bwlimit {bwlimit.text if isinstance(bwlimit, BwLimit) else bwlimit}"


def _library(library: LibraryConfig) -> str:
    group = library.group or "the daemon's group"
    return f"library: files {library.file_mode:04o}, folders {library.dir_mode:04o}, group {group}"
