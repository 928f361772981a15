"""Duplicates stored once (`library.dedupe`): a landing file whose bytes a library copy
already holds shares that copy's blocks instead of taking new ones.

`auto` (the default) reflinks where the filesystem can (XFS, btrfs; `share.clone`) and keeps
the copy elsewhere, saying once per library that reflinks are unavailable; `hardlink` (only
by explicit choice) gives the file a second name of the copy's inode and makes it read-only;
`off` keeps copies. Files under MIN_SIZE (64 KiB) are kept as copies. The setting is one
for the process (`configure`, at start, like `modes.configure`).

`Sharer.share_temp` runs on the transfer threads, between a fetched file's verification and
its rename into place: the fetched temp file is replaced (renamed over) by a checked temp
that shares the blocks, so what lands under the name is one or the other, whole. The
library copies of some bytes come from the manifest (`manifest.shared.holders`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from forge_syncd.config.model import Dedupe
from forge_syncd.library import share
from forge_syncd.library.manifest import Manifest
from forge_syncd.library.manifest.shared import Holder
from forge_syncd.library.versions import version_local_path
from forge_syncd.paths import local_path

REFLINK = "reflink"
HARDLINK = "hardlink"
COPY = "copy"
MAX_SOURCES = 4  # library copies tried for one file (one whose bytes changed is skipped)
# Smaller files are kept as copies: sharing saves little there, and a lookup per small file
# would slow a sync of many thumbnails.
MIN_SIZE = 64 * 1024

_mode: Dedupe = "auto"
_lock = threading.Lock()
_no_reflink: set[int] = set()  # filesystems (st_dev) where FICLONE failed
_told: set[bytes] = set()  # libraries already told that reflinks are unavailable


def configure(mode: Dedupe) -> None:
    """Put `library.dedupe` in force for this process (at start; tests)."""
    global _mode
    _mode = mode


def current() -> Dedupe:
    """Return the `library.dedupe` in force."""
    return _mode


def holder_path(media_root: bytes, holder: Holder) -> bytes:
    """Return the local path of a library copy the manifest names. Raise ValueError for a
    path that would leave its container's folder."""
    container_dir = os.path.join(media_root, holder.container.encode())
    if holder.version:
        return version_local_path(container_dir, holder.path)
    return local_path(container_dir, holder.path)


def _path_or_none(media_root: bytes, holder: Holder) -> bytes | None:
    try:
        return holder_path(media_root, holder)
    except ValueError:
        return None


def no_reflink_here(folder: bytes) -> bool:
    """Return whether FICLONE already failed on the filesystem of `folder`."""
    try:
        return os.stat(folder).st_dev in _no_reflink
    except OSError:
        return False


class Sharer:
    """Shares the blocks of files landing in one library (`media_root`) with the library
    copies the manifest knows of the same bytes."""

    def __init__(
        self, manifest: Manifest, media_root: bytes, log: Any, mode: Dedupe | None = None
    ) -> None:
        self.manifest = manifest
        self.media_root = media_root
        self.log = log
        self.mode: Dedupe = _mode if mode is None else mode

    def sources(
        self, sha256: str, size: int, target: bytes, also: Iterable[bytes] = ()
    ) -> list[bytes]:
        """Return up to MAX_SOURCES library files with these bytes, of that size now, other
        than `target` (and not its inode): `also` first (files this run landed, not yet
        recorded), then those the manifest records."""
        found: list[bytes] = []
        holders = self.manifest.shared.holders(sha256, size, MAX_SOURCES * 4)
        paths = [*also, *(_path_or_none(self.media_root, h) for h in holders)]
        for path in paths:
            try:
                info = os.lstat(path) if path is not None else None
            except OSError:
                continue
            if path is None or info is None:
                continue
            if path == target or info.st_size != size or share.same_inode(path, target):
                continue
            found.append(path)
            if len(found) == MAX_SOURCES:
                break
        return found

    def share_temp(
        self,
        temp: bytes,
        target: bytes,
        sha256: str | None,
        size: int,
        also: Iterable[bytes] = (),
    ) -> str | None:
        """Given a fetched, verified temp file for `target` and its sha256, replace the temp
        by one sharing a library copy's blocks (`also`: files of the same bytes this run
        landed) where `library.dedupe` and the filesystem allow; return how (REFLINK,
        HARDLINK) or None (the temp is left as it was). Never raises: a failure keeps the
        copy."""
        if self.mode == "off" or sha256 is None or size < MIN_SIZE:
            return None
        try:
            sources = self.sources(sha256, size, target, also)
        except Exception as exc:  # a manifest that cannot be read keeps the copy
            self.log.warning("dedupe_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        for source in sources:
            try:
                made, how = self.make(source, target, sha256)
                os.rename(made, temp)
            except share.ReflinkUnavailable:
                self.unavailable(target)
                return None
            except (OSError, share.NotTheBytes):
                continue  # this copy changed or went: try the next one
            return how
        return None

    def make(self, source: bytes, beside: bytes, sha256: str) -> tuple[bytes, str]:
        """Make a checked temp file beside `beside` that shares `source`'s blocks; return
        it and how. Raise ReflinkUnavailable (`auto` on a filesystem without reflinks),
        NotTheBytes or OSError."""
        folder = os.path.dirname(beside)
        if self.mode == "hardlink":
            temp = share.checked(share.link(source, beside), sha256)
            share.make_readonly(temp)
            return temp, HARDLINK
        if no_reflink_here(folder):
            raise share.ReflinkUnavailable(0, "no reflink on this filesystem")
        return share.checked(share.clone(source, beside), sha256), REFLINK

    def local_copy(self, source: bytes, beside: bytes, sha256: str) -> tuple[bytes, str]:
        """Make a checked temp file beside `beside` with `source`'s bytes: shared where
        `library.dedupe` and the filesystem allow, else copied; return it and how. Raise
        NotTheBytes or OSError."""
        if self.mode != "off":
            try:
                return self.make(source, beside, sha256)
            except share.ReflinkUnavailable:
                self.unavailable(beside)
        return share.checked(share.copy(source, beside), sha256), COPY

    def unavailable(self, target: bytes) -> None:
        """Remember that the filesystem of `target` cannot reflink; say so once a library."""
        folder = os.path.dirname(target)
        try:
            device = os.stat(folder).st_dev
        except OSError:
            return
        with _lock:
            _no_reflink.add(device)
            if self.media_root in _told:
                return
            _told.add(self.media_root)
        self.log.warning(
            "dedupe_unavailable",
            library=os.fsdecode(self.media_root),
            error="this filesystem cannot share blocks (no reflink): identical files are kept"
            " as copies (library.dedupe: auto; XFS and btrfs can, see README)",
        )


def forget_filesystems() -> None:
    """Forget which filesystems lacked reflinks and which libraries were told (tests)."""
    with _lock:
        _no_reflink.clear()
        _told.clear()
