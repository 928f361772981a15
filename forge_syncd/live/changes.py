"""What a live watcher reported and is not synced yet, and when each file is ready.

A file is ready (complete) when the watcher saw it closed after writing or renamed into
place (`w`), or, for a file only seen (`s`: found in a new folder, or by the find
detector), when two looks in a row saw the same size and mtime, or its mtime is older than
`settle`. Pure (no I/O), bounded: past `max_files` pending names the set overflows and the
next run is a full one, which reconciles everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forge_syncd.mtimes import older_than
from forge_syncd.remote.types import RemoteFile

MAX_PENDING = 10_000


@dataclass
class Ready:
    """What to sync now: `files` (complete), or `full` (a full run: the watcher lost track)."""

    files: list[RemoteFile] = field(default_factory=list)
    full: bool = False


class Changes:
    """The files a watcher reported, waiting to be synced; not thread-safe (one watcher)."""

    def __init__(self, max_files: int = MAX_PENDING) -> None:
        self.max_files = max_files
        self.complete: dict[bytes, RemoteFile] = {}
        self.seen: dict[bytes, RemoteFile] = {}  # one look so far
        # Handed on already, as they were then: a later look that sees one unchanged (the
        # find detector looks at each change more than once) is nothing new.
        self.handed: dict[bytes, RemoteFile] = {}
        self.overflowed = False

    def __bool__(self) -> bool:
        return bool(self.complete or self.seen or self.overflowed)

    def written(self, remote: RemoteFile) -> None:
        """The file was closed after writing or renamed into place: complete."""
        self.seen.pop(remote.path, None)
        self._put(self.complete, remote)

    def looked(self, remote: RemoteFile) -> None:
        """A look saw the file: complete if the look before saw it the same."""
        before = self.seen.get(remote.path)
        if self.handed.get(remote.path) == remote:
            return
        if before == remote:
            del self.seen[remote.path]
            self._put(self.complete, remote)
        elif remote.path in self.complete and self.complete[remote.path] == remote:
            pass  # already complete, unchanged
        else:
            self.complete.pop(remote.path, None)
            self._put(self.seen, remote)

    def deleted(self, path: bytes) -> None:
        self.complete.pop(path, None)
        self.seen.pop(path, None)

    def overflow(self) -> None:
        """Changes were lost (the watcher's queue overflowed, it restarted): reconcile."""
        self.overflowed = True
        self.complete.clear()
        self.seen.clear()

    def _put(self, into: dict[bytes, RemoteFile], remote: RemoteFile) -> None:
        if len(self.complete) + len(self.seen) >= self.max_files and remote.path not in into:
            self.overflow()
            return
        into[remote.path] = remote

    def next_settled_ns(self, settle_ns: int) -> int | None:
        """Return when (remote clock, ns) the first seen-once file becomes ready by age."""
        if not self.seen:
            return None
        return min(remote.mtime_ns for remote in self.seen.values()) + settle_ns

    def take(self, now_ns: int, settle_ns: int) -> Ready:
        """Return what is ready at `now_ns` (the remote clock), and forget it here; files
        not ready yet stay."""
        if self.overflowed:
            self.overflowed = False
            self.complete.clear()
            self.seen.clear()
            return Ready(full=True)
        settled = [r for r in self.seen.values() if older_than(r.mtime_ns, now_ns, settle_ns)]
        for remote in settled:
            del self.seen[remote.path]
        ready = Ready(files=[*self.complete.values(), *settled])
        self.complete.clear()
        if len(self.handed) + len(ready.files) > self.max_files:
            self.handed.clear()
        self.handed.update((remote.path, remote) for remote in ready.files)
        return ready
