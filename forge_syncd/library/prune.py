"""Pruning earlier versions (`keep_versions`): a version's age is measured from its stamp
(see versions.py), so a wrong clock must not make a version look old.

Only files under `.versions/` that the manifest records as kept versions are touched. A
version stamped later than the manifest's newest record (its container's newest run start),
other than one this run made, is kept and logged (`version_prune_skipped`): the clock that
stamped it ran ahead, so its age cannot be trusted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from datetime import datetime, timedelta

from forge_syncd.library import events as records
from forge_syncd.library import localfs
from forge_syncd.library.manifest import VersionMove
from forge_syncd.library.versions import Versions, iso, parse_utc, version_local_path
from forge_syncd.paths import VERSIONS_DIR, display


class Pruner:
    """Deletes the kept versions of a run's container that `keep_versions` lets go, with
    the run's `Versions` (its manifest, folder, log, clock and the versions it made)."""

    def __init__(self, versions: Versions) -> None:
        self.versions = versions
        self.manifest = versions.manifest
        self.container = versions.container
        self.container_dir = versions.container_dir
        self.log = versions.log

    def prune(self, keep_s: float | None, now: datetime | None = None) -> int:
        """Delete kept versions older than `keep_s` (None: keep all); return how many."""
        if keep_s is None:
            return 0
        cutoff = (now or self.versions.clock()) - timedelta(seconds=keep_s)
        old = self._trusted(self.manifest.versions.kept(self.container, iso(cutoff)))
        folders = set()
        for move in old:
            path = version_local_path(self.container_dir, move.version_path)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            folders.add(os.path.dirname(path))
            self.log.info(
                "version_pruned",
                path=display(move.path),
                version_path=display(move.version_path),
                bytes=move.size,
            )
        for folder in folders:
            if os.path.isdir(folder):
                localfs.fsync_folder(folder)
        run_id = self.versions.run_id
        events = [
            records.version_pruned(self.container, run_id, self.container_dir, move) for move in old
        ]
        self.manifest.versions.record_pruned(self.container, old, events)
        self._remove_empty_folders(folders)
        return len(old)

    def _trusted(self, candidates: list[VersionMove]) -> list[VersionMove]:
        """Return the candidates for pruning whose stamps fit the manifest's timeline; log
        each one left out."""
        newest = self.manifest.runs.newest_start(self.container)
        newest_time = parse_utc(newest)
        if newest_time is None:
            return candidates
        kept = []
        for move in candidates:
            stamped = parse_utc(move.versioned_at)
            ahead = stamped is not None and stamped > newest_time
            if ahead and move.version_path not in self.versions.made:
                self.log.warning(
                    "version_prune_skipped",
                    path=display(move.path),
                    version_path=display(move.version_path),
                    versioned_at=move.versioned_at,
                    newest_record=newest,
                    error="stamped after the manifest's newest record (the clock jumped):"
                    " kept, its age cannot be trusted",
                )
                continue
            kept.append(move)
        return kept

    def _remove_empty_folders(self, folders: Iterable[bytes]) -> None:
        top = os.path.join(self.container_dir, VERSIONS_DIR)
        for folder in sorted(folders, key=len, reverse=True):
            probe = folder
            while probe.startswith(top + b"/"):
                try:
                    os.rmdir(probe)
                except OSError:
                    break
                probe = os.path.dirname(probe)
