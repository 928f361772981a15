"""Earlier versions of library files: bytes in the library are never destroyed by a sync.

Before a remote file takes a library path where other bytes sit (a name reused after a
purge, a file changed in place, a file replaced by a folder or the reverse, a local file the
manifest never knew), whatever is there is moved to
`<media_root>/<container>/.versions/<same relative path, a UTC stamp added to the name>`;
only then is the new file renamed into place.

Crash safety: each move is announced in the manifest (a `pending` version row) before it is
made, then made with one rename (never a copy, never over anything) and both folders are
fsynced. A kill before the rename leaves the old file in place and a pending row whose
version does not exist: `recover` drops the row. A kill after it leaves a pending row whose
version exists: `recover` records it as kept (logged and emitted as `file_versioned`) and
drops the path's current manifest row, so the path is fetched (or adopted) again.

Clocks: a version's age (`keep_versions`) is measured from its stamp, so a wrong clock must
not make a version look old. A stamp is never earlier than the newest start of a run of its
container that the manifest holds: a box that boots with its clock in the past (before NTP)
stamps that time instead, and logs `clock_behind`; otherwise NTP's correction would make
the version old at once. And pruning (library/prune.py) never deletes a version stamped later
than that newest record (a clock that ran ahead when it was stamped): it is kept, and
`version_prune_skipped` says why, naming the version and the newest record's time.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from forge_syncd.library import localfs, modes
from forge_syncd.library.events import file_versioned
from forge_syncd.library.manifest import Manifest, VersionMove
from forge_syncd.paths import MAX_COMPONENT, VERSIONS_DIR, display, local_path

LONGEST_EXTENSION = 16  # a longer "extension" is part of the name: the stamp goes at the end


def stamp(moment: datetime) -> bytes:
    """Return the UTC time stamp a version's name carries: 20261201T164842.123456Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ").encode()


def version_path_for(relative: bytes, when: bytes, attempt: int = 0) -> bytes:
    """Given a file's path relative to its container's folder, the stamp of the moment it
    is replaced and a retry number (0 first), return its version's path relative to the
    container's folder: `.versions/a/b/name.<stamp>[-N].ext`, the name shortened so that it
    stays a legal file name (255 bytes)."""
    folder, _, name = relative.rpartition(b"/")
    stem, dot, extension = name.rpartition(b".")
    if not dot or not stem or len(extension) > LONGEST_EXTENSION:
        stem, extension = name, b""
    else:
        extension = b"." + extension
    tag = b"." + when + (b"-%d" % attempt if attempt else b"")
    stem = stem[: MAX_COMPONENT - len(tag) - len(extension)]
    return b"/".join(part for part in (VERSIONS_DIR, folder, stem + tag + extension) if part)


def version_local_path(container_dir: bytes, version_path: bytes) -> bytes:
    """Given a container's folder and a version's path relative to it, return the version's
    local path. Raise ValueError unless it stays inside the container's `.versions/`."""
    top, _, inside = version_path.partition(b"/")
    if top != VERSIONS_DIR:
        raise ValueError(f"refusing {version_path!r}: not under {VERSIONS_DIR!r}")
    return local_path(os.path.join(container_dir, VERSIONS_DIR), inside)


class Versions:
    """Moves what stands in a remote file's way into `.versions/` and records it; recovers
    moves a crash interrupted. One per run (library/prune.py prunes old versions with
    it)."""

    def __init__(
        self,
        manifest: Manifest,
        container: str,
        container_dir: bytes,
        run_id: str,
        log: Any,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.manifest = manifest
        self.container = container
        self.container_dir = container_dir
        self.run_id = run_id
        self.log = log
        self.clock = clock or utc_clock
        # The versions this run made: stamped by this run's clock, and not yet in the
        # manifest's timeline, so pruning (keep_versions: 0) may delete them at its end.
        self.made: set[bytes] = set()
        self._warned_clock = False

    def make_way(self, relative: bytes, incoming: bytes | None) -> list[VersionMove]:
        """Given a path about to receive a file (`incoming`: the temporary file with its new
        bytes) or a folder (`incoming` None), move whatever else stands there into
        `.versions/`, durably; return the moves made (none when the path is free, holds the
        same bytes, or already is the folder wanted). Raise OSError or ValueError if what
        stands there cannot be moved (it is then left as it was)."""
        target = local_path(self.container_dir, relative)
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            return []
        if stat.S_ISDIR(info.st_mode):
            return [] if incoming is None else self._move(relative, target, folder=True)
        if (
            incoming is not None
            and stat.S_ISREG(info.st_mode)
            and localfs.same_bytes(incoming, target)
        ):
            return []
        return self._move(relative, target, folder=False)

    def make_way_for_folder(self, folder: bytes) -> list[VersionMove]:
        """Given a local folder (absolute, inside the container's folder) that must exist,
        move each file standing where one of its folders must be; return the moves."""
        relative = folder[len(self.container_dir) + 1 :]
        moves: list[VersionMove] = []
        parts = relative.split(b"/")
        for depth in range(1, len(parts) + 1):
            prefix = b"/".join(parts[:depth])
            try:
                info = os.lstat(local_path(self.container_dir, prefix))
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(info.st_mode):
                moves += self.make_way(prefix, None)
        return moves

    def _move(self, relative: bytes, target: bytes, folder: bool) -> list[VersionMove]:
        """Announce, then rename `target` (a file or a whole folder) to a fresh version
        name, then fsync both folders; return one move per file it held."""
        moment = self._stamp_time()
        when = stamp(moment)
        for attempt in range(100):
            version = version_path_for(relative, when, attempt)
            destination = version_local_path(self.container_dir, version)
            if not os.path.lexists(destination):
                break
        else:
            raise FileExistsError(f"no free version name for {display(relative)}")
        moves = self._moves(relative, target, version, folder, moment)
        self._ensure_folder(os.path.dirname(destination))
        self.manifest.versions.record_pending(self.container, moves)
        self.made.update(move.version_path for move in moves)
        localfs.rename_noreplace(target, destination)
        if not folder and _link_count(destination) == 1:
            # A file landed by an earlier release may have other modes: a version gets
            # the library's like every file landed (a folder's files already have them).
            # A hard-linked one (`library.dedupe: hardlink`) keeps its read-only inode.
            with contextlib.suppress(OSError):
                modes.apply_to_path(destination, folder=False)
        localfs.fsync_folder(os.path.dirname(destination))
        localfs.fsync_folder(os.path.dirname(target))
        return moves

    def _stamp_time(self) -> datetime:
        """Return the time to stamp a version with: the clock's, but never earlier than the
        newest start of this container's runs the manifest holds (logged once a run when the
        clock is behind)."""
        now = self.clock()
        newest = parse_utc(self.manifest.runs.newest_start(self.container))
        if newest is None or now >= newest:
            return now
        if not self._warned_clock:
            self._warned_clock = True
            self.log.warning(
                "clock_behind",
                clock=iso(now),
                newest_record=iso(newest),
                error="the clock is behind the manifest's newest record: versions are"
                " stamped with that record's time",
            )
        return newest

    def _moves(
        self, relative: bytes, target: bytes, version: bytes, folder: bool, moment: datetime
    ) -> list[VersionMove]:
        """Return the move of each entry `target` holds (itself, or every file below it)."""
        at = iso(moment)
        entries: list[tuple[bytes, os.stat_result]] = []
        if folder:
            for parent, dirs, files in os.walk(target):
                for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(parent, d)))]:
                    path = os.path.join(parent, name)
                    entries.append((path[len(target) :], os.lstat(path)))
        else:
            entries.append((b"", os.lstat(target)))
        rows = self.manifest.files.records_at(
            self.container, [relative + inner for inner, _ in entries]
        )
        moves = []
        for inner, info in entries:
            record = rows.get(relative + inner)
            known = record is not None and record.size == info.st_size
            moves.append(
                VersionMove(
                    relative + inner,
                    version + inner,
                    info.st_size,
                    info.st_mtime_ns,
                    record.sha256 if known and record is not None else None,
                    at,
                )
            )
        return moves

    def _ensure_folder(self, folder: bytes) -> None:
        """Create a folder under `.versions/` and make its entry durable up the tree."""
        missing = []
        probe = folder
        while not os.path.isdir(probe) and len(probe) > len(self.container_dir):
            missing.append(probe)
            probe = os.path.dirname(probe)
        localfs.ensure_folder(self.container_dir, folder)
        for created in missing:
            localfs.fsync_folder(os.path.dirname(created))

    def events(self, moves: Iterable[VersionMove]) -> list[dict[str, Any]]:
        """Return the `file_versioned` events of finished moves, and log each."""
        events = []
        for move in moves:
            events.append(file_versioned(self.container, self.run_id, self.container_dir, move))
            self.log.info(
                "file_versioned",
                path=display(move.path),
                version_path=display(move.version_path),
                bytes=move.size,
            )
        return events

    def finish(self, moves: list[VersionMove]) -> None:
        """Record moves whose path got no new file in the same transaction (a folder made
        where a file was, a failed rename): kept, with events; the path's row dropped."""
        if moves:
            self.manifest.files.record_synced(self.container, [], self.events(moves), moves)

    def recover(self) -> int:
        """Settle the moves a crash interrupted; return how many versions were kept."""
        pending = self.manifest.versions.pending(self.container)
        if not pending:
            return 0
        made = [
            m
            for m in pending
            if os.path.lexists(version_local_path(self.container_dir, m.version_path))
        ]
        never = [m for m in pending if m not in made]
        self.manifest.versions.drop_pending(self.container, never)
        self.finish(made)
        return len(made)


def utc_clock() -> datetime:
    """The wall clock, in UTC (Versions' default clock)."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """Return a time as the manifest writes it: ISO 8601 UTC with microseconds and `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_utc(text: str | None) -> datetime | None:
    """Return a time the manifest wrote (ISO 8601), None for None or unreadable text."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _link_count(path: bytes) -> int:
    """Return how many names a file's inode has (1 if it cannot be read)."""
    try:
        return os.lstat(path).st_nlink
    except OSError:
        return 1
