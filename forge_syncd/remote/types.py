"""The words a run and a transport share about a container's files: what a listing holds,
what a fetch is asked and answers, what a delete did, what a live watcher reports.

Plain data, in the package's own types: nothing here names paramiko, a shell or a path of
this machine beyond the temporary names a fetch writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from forge_syncd.errorkinds import FileKind

# What this machine can hold: sizes are 64-bit signed in SQLite and the kernel. A remote
# value outside is refused where it is parsed, with a reason, instead of overflowing later.
# Mtimes are unbounded ints (`mtimes.py`): any date from year 1 to 9999 is synced.
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A regular file on the remote. `path` is relative to the container's root."""

    path: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """A listed entry that is not synced, and why. `regular`: it is a regular file (media a
    container may lose: counted at risk); `size` and `mtime_ns` where the listing gave them
    as numbers."""

    path: bytes
    reason: str
    regular: bool = False
    size: int = 0
    mtime_ns: int | None = None


def refused_media(skipped: Iterable[Skipped], now_ns: int) -> list[RemoteFile]:
    """Given what a listing refused and the container's clock, return the refused regular
    files: media the container holds and a sync never copies (a name reserved for the
    library, a date past 9999, a lying record), at risk like any file not yet copied.
    Symlinks, FIFOs, sockets and devices hold no media. One whose mtime is not a number is
    dated `now_ns`."""
    return [
        RemoteFile(s.path, s.size, now_ns if s.mtime_ns is None else s.mtime_ns)
        for s in skipped
        if s.regular
    ]


class ListingMethod(StrEnum):
    """How a container's files were listed."""

    FIND = "find"  # GNU find on the container (one command, the fast path)
    SFTP = "sftp"  # an SFTP walk (no GNU find)
    WATCH = "watch"  # no listing: the files a live watcher reported


class TransferMethod(StrEnum):
    """How a fetch's bytes came."""

    TAR = "tar"  # one tar stream (GNU tar on the container)
    SFTP = "sftp"  # file by file over SFTP
    COPY = "copy"  # file by file from a folder of this machine (`transport: local`)
    ARCHIVE = "archive"  # file by file through the Docker engine's archive endpoint
    PUSH = "push"  # pushed by the live watcher behind its record (`transports/pushed.py`)


@dataclass
class Listing:
    """`reused`: the caller recognised the listing's bytes and it was not parsed (files and
    skipped are empty; the caller knows them from before)."""

    method: ListingMethod
    files: list[RemoteFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reused: bool = False


@dataclass(frozen=True)
class Limits:
    """How much one listing may hold (`max_listing_files`, `max_listing_size`); past it the
    listing is refused with ListingError, so a hostile container cannot exhaust memory."""

    files: int = 2_000_000
    size: int = 512 * 1024**2


@dataclass(frozen=True, slots=True)
class FetchItem:
    remote: RemoteFile
    target: bytes  # final local path (the strategy writes only a temporary beside it)


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome for one file. `temp` is set only when bytes were written and fsynced."""

    item: FetchItem
    temp: bytes | None
    nbytes: int = 0
    sha256: str | None = None
    changed: bool = False
    error: str | None = None
    error_kind: FileKind | None = None  # transfer | disk_full | vanished | cancelled | ...
    racy: bool = False  # read within a clock tick of its mtime (`mtimes.settled_by`)


# A time the container's clock has surely passed (ns): what a transfer that cannot ask the
# container for its clock compares mtimes with (`clock.ContainerClock.surely_passed_ns`).
EarliestNow = Callable[[], int]


OnFetched = Callable[[Fetched], None]
OnBytes = Callable[[int], None]
OnStart = Callable[[FetchItem], None]


def told_nothing(_: object) -> None:
    """A fetch callback whose caller needs nothing from it."""


@dataclass(frozen=True)
class FetchCallbacks:
    """What a fetch tells its caller, from any of its threads: `on_fetched(fetched)`, once
    per item, its outcome; `on_bytes(n)`, n more bytes of files written (progress counts
    them); `on_start(item)`, an item's bytes begin to come; `on_received(item)`, an item
    arrived whole, before its `on_fetched` (which a stream may call for several at once,
    later): progress counts it then. A transport that cannot tell one of them never calls
    it."""

    on_fetched: OnFetched
    on_bytes: OnBytes = told_nothing
    on_start: OnStart = told_nothing
    on_received: OnStart = told_nothing


@dataclass
class FetchReport:
    """How a fetch went: the way the bytes came (`tar` or `sftp`), tar members refused
    (name, reason), and how many files the tar stream did not deliver and were fetched
    again over SFTP (with the first reason)."""

    transfer: TransferMethod | None = None  # set by the fetch
    refused: list[tuple[bytes, str]] = field(default_factory=list)
    fallback: int = 0
    fallback_reason: str = ""


@dataclass
class Deleted:
    """What a delete did: `gone`, the paths deleted; `differs`, the paths kept because the
    remote file's sha256 was not the library copy's (new bytes under the same size and
    mtime: the sync must fetch them)."""

    gone: set[bytes] = field(default_factory=set)
    differs: set[bytes] = field(default_factory=set)


class WatchEvent(StrEnum):
    """What a live watcher reports (the shell watcher's one-letter wire codes are mapped to
    these in `transports/shell/watch.parse_records`)."""

    WRITTEN = "written"  # closed after writing or renamed into place: complete
    SEEN = "seen"  # found by a look: complete once two looks agree or it settled
    DELETED = "deleted"  # deleted or moved away
    STARTED = "started"  # the watcher is established (the message names it)
    OVERFLOW = "overflow"  # changes were lost: reconcile
    FAILED = "failed"  # a watcher failed (the message says why)
    ALIVE = "alive"  # nothing new, still running
    REFUSED = "refused"  # a file the listing rules refuse (the message says why)


@dataclass(frozen=True)
class WatchRecord:
    """One watcher record: its `event`, and the file (WRITTEN, SEEN), the path (DELETED,
    REFUSED) or the message (STARTED, FAILED, REFUSED). A WRITTEN file whose bytes the
    watcher pushed behind its record has them in `content` (with `read_after_ns`, the
    container's clock before they were read) until the watcher's stream hands them to its
    transport, then `pushed` says they wait there."""

    event: WatchEvent
    file: RemoteFile | None = None
    path: bytes = b""
    message: str = ""
    content: bytes | None = None
    read_after_ns: int = 0
    pushed: bool = False


@dataclass(frozen=True)
class DiskSpace:
    """Room left on a filesystem: bytes, and inodes where the filesystem counts them."""

    free_bytes: int
    free_inodes: int | None = None
