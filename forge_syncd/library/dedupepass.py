"""`forge-syncctl dedupe [--dry-run]`: share the identical bytes a library already holds
(files landed before `library.dedupe`, or with it `off`).

The groups come from the manifest (files and kept versions with the same sha256 and size);
every copy is hashed before anything is shared (a copy edited since it was recorded is left
alone), and the first copy that still has the bytes is the source. Each other copy is
replaced, under its container's lock (no run writes it meanwhile) and only if it is still
the file that was hashed, by a checked temp file sharing the source's blocks, renamed over
it (`Sharer.make`), its folder fsynced: a kill -9 at any moment leaves each name with the
old copy or the shared one, whole. A copy that already shares the source's blocks counts as
saved and is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from forge_syncd.config.model import Dedupe
from forge_syncd.jobs.record import Busy
from forge_syncd.library import localfs, share
from forge_syncd.library.dedupe import MIN_SIZE, Sharer, holder_path
from forge_syncd.library.manifest import Manifest
from forge_syncd.library.manifest.shared import Holder
from forge_syncd.paths import display

Hold = Callable[[str], AbstractContextManager[None]]  # a container's lock (Busy if taken)


@dataclass
class DedupeReport:
    """What a pass did (or, `dry_run`, would do): `files` and `bytes` shared by it, those
    that already shared (`already_*`), copies left (their bytes differ from the
    manifest's, they are gone, or the filesystem cannot share), containers skipped because
    a run held them, `saved_bytes` (the gauge's value after it)."""

    mode: str
    dry_run: bool
    groups: int = 0
    files: int = 0
    bytes: int = 0
    already_files: int = 0
    already_bytes: int = 0
    left: int = 0
    busy: set[str] = field(default_factory=set)
    unavailable: bool = False
    saved_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "groups": self.groups,
            "files": self.files,
            "bytes": self.bytes,
            "already_files": self.already_files,
            "already_bytes": self.already_bytes,
            "left": self.left,
            "busy": sorted(self.busy),
            "unavailable": self.unavailable,
            "saved_bytes": self.saved_bytes,
        }


@dataclass(frozen=True)
class Copy:
    """One verified library copy: who the manifest says it is, where, and its inode's
    (st_ino, size, mtime_ns) when it was hashed."""

    holder: Holder
    path: bytes
    seen: tuple[int, int, int]


def _seen(path: bytes) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns


class DedupePass:
    """One pass over a library (`media_root`) and its manifest."""

    def __init__(
        self,
        manifest: Manifest,
        media_root: bytes,
        log: Any,
        hold: Hold,
        mode: Dedupe | None = None,
    ) -> None:
        self.manifest = manifest
        self.log = log
        self.hold = hold
        self.sharer = Sharer(manifest, media_root, log, mode)

    def run(self, dry_run: bool = False) -> DedupeReport:
        """Share every group of identical copies; return the report."""
        report = DedupeReport(self.sharer.mode, dry_run)
        if self.sharer.mode != "off":
            for sha256, size in self.manifest.shared.duplicated(MIN_SIZE):
                self._group(sha256, size, report)
                if report.unavailable:
                    break
        report.saved_bytes = self.manifest.shared.saved_bytes()
        self.log.info("dedupe_finished", **report.to_json())
        return report

    def verified(self, sha256: str, size: int, report: DedupeReport) -> list[Copy]:
        """Return the group's copies that hold these bytes now (each hashed)."""
        found = []
        for holder in self.manifest.shared.holders(sha256, size):
            try:
                path = holder_path(self.sharer.media_root, holder)
                seen = _seen(path)
                if seen[1] == size and share.sha256_of(path) == sha256:
                    found.append(Copy(holder, path, seen))
                    continue
            except (OSError, ValueError):
                pass
            report.left += 1
        return found

    def _group(self, sha256: str, size: int, report: DedupeReport) -> None:
        copies = self.verified(sha256, size, report)
        if len(copies) < 2:
            return
        report.groups += 1
        source, shared = copies[0], []
        for copy in copies[1:]:
            if share.shares_blocks(source.path, copy.path):
                report.already_files += 1
                report.already_bytes += size
                shared.append(copy)
            elif report.dry_run:
                report.files += 1
                report.bytes += size
            elif self._share(source, copy, sha256, report):
                report.files += 1
                report.bytes += size
                shared.append(copy)
            if report.unavailable:
                return
        for container in {c.holder.container for c in shared if not c.holder.version}:
            paths = [c.holder.path for c in shared if c.holder.container == container]
            self.manifest.shared.mark_shared(container, paths)

    def _share(self, source: Copy, copy: Copy, sha256: str, report: DedupeReport) -> bool:
        """Replace `copy` by a file sharing `source`'s blocks; return whether it was."""
        container = copy.holder.container
        try:
            with self.hold(container):
                if _seen(copy.path) != copy.seen:  # changed since hashed: left alone
                    report.left += 1
                    return False
                made, how = self.sharer.make(source.path, copy.path, sha256)
                if how != "hardlink":
                    os.utime(made, ns=(copy.seen[2], copy.seen[2]))
                os.rename(made, copy.path)
                localfs.fsync_folder(os.path.dirname(copy.path))
        except Busy:
            report.busy.add(container)
            return False
        except share.ReflinkUnavailable:
            self.sharer.unavailable(copy.path)
            report.unavailable = True
            return False
        except (OSError, share.NotTheBytes) as exc:
            report.left += 1
            self.log.warning("dedupe_left", path=display(copy.path), error=str(exc)[:300])
            return False
        self.log.info("file_deduped", path=display(copy.path), bytes=copy.seen[1], how=how)
        return True
