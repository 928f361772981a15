"""One copy to the mirror, made through the rcd (`rcd.py`) and verified.

1. The library file is opened (its inode pinned: a rename over its name later changes
   nothing) and hashed: sha256, and the hash the remote checks with. Other bytes than the
   queued sha256 mean the name was reused (the queued bytes moved to `.versions/`, whose
   event queues them there): `Stale`, the copy is dropped, never the new bytes under it.
2. rclone copies that very open file (`/proc/<pid>/fd/<n>` through the local backend's
   `copy_links`) to `<name>.forge-sync-partial` on the remote, then renames it to `<name>`
   (`operations/movefile`, server-side on local folders and SFTP). rclone 1.60 writes a
   local or SFTP destination in place (`--inplace` is its only behaviour before 1.63): a
   kill in mid-copy would leave a partial file under the final name; here it leaves one
   only under the partial name, which the next attempt writes over.
3. The file under its final name is checked (`operations/stat`): its size, and the best hash
   the remote makes that is computed here too (`choose_check`: sha256 > sha1 > md5; the
   local backend makes sha256, SFTP md5 and sha1 by running md5sum/sha1sum on the server),
   else its modification time at the remote's precision. Other bytes there: the file is
   deleted and the copy fails (tried again later).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from forge_syncd.events.sinks.mirror.rcd import RcloneDaemon, RcloneError
from forge_syncd.events.sinks.mirror.state import Copy

PARTIAL_SUFFIX = ".forge-sync-partial"
LOCAL_HASHES = ("sha256", "sha1", "md5")  # best first; hashlib makes them all
BLOCK = 1024 * 1024


class Stale(Exception):
    """The library no longer holds the queued bytes under the copy's local path."""


class MirrorError(Exception):
    """A copy could not be made or did not verify."""


def choose_check(remote_hashes: list[str]) -> str:
    """Given the hashes a remote makes (`operations/fsinfo`), return how copies are
    checked there: the best of LOCAL_HASHES it makes, else "size" (size and modtime)."""
    made = {str(kind).lower() for kind in remote_hashes}
    return next((kind for kind in LOCAL_HASHES if kind in made), "size")


@dataclass
class Pinned:
    """An open library file and what it holds."""

    fd: int
    size: int
    mtime_ns: int
    digests: dict[str, str]


def pin(local_path: bytes, kinds: set[str]) -> Pinned:
    """Open the library file at `local_path` (a regular file, not through a symlink) and hash
    it with `kinds` (sha256 always). Return it open (the caller closes `fd`). Raise
    FileNotFoundError if it is gone, OSError if it cannot be read."""
    fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"not a regular file: {os.fsdecode(local_path)}")
        hashers = {kind: hashlib.new(kind) for kind in {"sha256", *kinds}}
        offset = 0
        while chunk := os.pread(fd, BLOCK, offset):
            offset += len(chunk)
            for hasher in hashers.values():
                hasher.update(chunk)
        digests = {kind: hasher.hexdigest() for kind, hasher in hashers.items()}
        return Pinned(fd, offset, info.st_mtime_ns, digests)
    except BaseException:
        os.close(fd)
        raise


class Copier:
    """Copies files to one remote (`remote`, e.g. "nas:forge-media") through `rcd`."""

    def __init__(self, rcd: RcloneDaemon, remote: str) -> None:
        self.rcd = rcd
        self.remote = remote
        self.check: str | None = None  # learned from the remote at the first copy
        self.precision_ns = 1_000_000_000

    def learn(self) -> str:
        """Ask the remote which hashes it makes and its modtime precision (once)."""
        if self.check is None:
            info = self.rcd.call("operations/fsinfo", timeout_s=120.0, fs=self.remote)
            self.check = choose_check(list(info.get("Hashes") or []))
            precision = info.get("Precision")
            if isinstance(precision, int) and precision > 0:
                self.precision_ns = precision
        return self.check

    def copy(self, copy: Copy) -> str:
        """Make `copy` and verify it; return how it was checked. Raise Stale (other bytes
        at its local path now), FileNotFoundError (none), MirrorError or RcloneError."""
        check = self.learn()
        pinned = pin(copy.local_path, {check} - {"size"})
        try:
            if pinned.digests["sha256"] != copy.sha256:
                raise Stale(f"the library file now holds other bytes than {copy.sha256[:12]}")
            partial = copy.name + PARTIAL_SUFFIX
            try:
                self.rcd.call(
                    "operations/copyfile",
                    srcFs=f":local,copy_links:/proc/{os.getpid()}/fd",
                    srcRemote=str(pinned.fd),
                    dstFs=self.remote,
                    dstRemote=partial,
                )
            except RcloneError:
                self._delete(partial)  # a remote that is full gets its space back
                raise
            self.rcd.call(
                "operations/movefile",
                srcFs=self.remote,
                srcRemote=partial,
                dstFs=self.remote,
                dstRemote=copy.name,
            )
            self.verify(copy.name, pinned, check)
        finally:
            os.close(pinned.fd)
        return check

    def verify(self, name: str, pinned: Pinned, check: str) -> None:
        """Check the file `name` on the remote against `pinned`; delete it and raise
        MirrorError if it differs."""
        opt: dict[str, Any] = {"showHash": check != "size"}
        if check != "size":
            opt["hashTypes"] = [check]
        item = self.rcd.call("operations/stat", fs=self.remote, remote=name, opt=opt).get("item")
        problem = mismatch(item, pinned, check, self.precision_ns)
        if problem:
            self._delete(name)
            raise MirrorError(f"{name}: {problem}")

    def _delete(self, name: str) -> None:
        with contextlib.suppress(RcloneError):  # not there, or the remote is gone
            self.rcd.call("operations/deletefile", timeout_s=300.0, fs=self.remote, remote=name)


def mismatch(item: Any, pinned: Pinned, check: str, precision_ns: int) -> str:
    """Given `operations/stat`'s item for a copy, return why it is not the pinned file's
    bytes ("" when it is)."""
    if not isinstance(item, dict):
        return "not on the remote after the copy"
    if item.get("Size") != pinned.size:
        return f"size {item.get('Size')} on the remote, {pinned.size} in the library"
    if check != "size":
        there = str((item.get("Hashes") or {}).get(check) or "").lower()
        if there != pinned.digests[check]:
            return f"{check} {there or '(none)'} on the remote, {pinned.digests[check]} here"
        return ""
    try:
        moment = datetime.fromisoformat(str(item.get("ModTime")).replace("Z", "+00:00"))
    except ValueError:
        return f"unreadable modification time {str(item.get('ModTime'))[:40]!r}"
    there_ns = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    if abs(there_ns - pinned.mtime_ns) > max(precision_ns, 1_000_000):
        return "modification time differs on the remote"
    return ""
