"""A container reached through the Docker Engine API (`transport: docker`).

`DockerTransport` runs the same scripts as SSH (`transports/shell/`) in the container
through exec streams (`engine.py`: the Engine API over its unix socket, no dependency) and
reads their output with the same strict parsers and bounds: the container is as untrusted
as an SSH box. Fast paths where the container has the tools (GNU find, one GNU tar stream,
python3 or sha256sum hashes and deletes, inotify watcher); else a busybox `find` + `stat`
listing and the engine's archive endpoint, one file at a time (`archive.py`). Where a fetch
plans most of a folder's listed bytes (a first sync), that folder comes in one archive of
the engine's instead of the exec's tar stream (`archive.fetch_tree`). A missing or stopped
container is ConnectError (status: unreachable) with the engine's message.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.limits.registry import Limiter, limiter_for
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import ListingError, RemoteError
from forge_syncd.remote.transport import Lanes, Probe, WatchFeed
from forge_syncd.remote.types import (
    Deleted,
    FetchCallbacks,
    Fetched,
    FetchItem,
    FetchReport,
    Limits,
    Listing,
    RemoteFile,
    TransferMethod,
)
from forge_syncd.transports.docker import archive, execs
from forge_syncd.transports.docker.busybox import busybox_find_script
from forge_syncd.transports.docker.engine import Engine
from forge_syncd.transports.docker.fetch import Landing, changed_since, tar_fetch
from forge_syncd.transports.docker.watch import DockerWatch
from forge_syncd.transports.receive import remote_file
from forge_syncd.transports.shell.delete import delete_input, delete_script, parse_deleted
from forge_syncd.transports.shell.hashing import hash_script, parse_sha256sum_z
from forge_syncd.transports.shell.listing import find_script, listing_of_find, plainly_safe
from forge_syncd.transports.shell.probe import PROBE_OUTPUT, PROBE_SCRIPT, Capabilities, parse_probe
from forge_syncd.transports.shell.result import OutputTooLarge

IDLE_TIMEOUT_S = 60.0
HASH_FLOOR_BPS = 10_000_000  # the slowest a container may hash one file (as over SSH)
# A folder's planned files come in one archive of the whole folder (`tree_groups`) when they
# are at least this many and make half its listed bytes, or all but ARCHIVE_SLACK of them.
TREE_MIN_FILES = 16
UNIT_FILES = 256  # planned files per subfolder, on average, to fetch one at a time
UNIT_MAX_FILES = 25_000
UNIT_MAX_BYTES = 1024**3


class DockerTransport:
    """The Docker `Transport`: one container of one engine."""

    kind = "docker"

    def __init__(self, container: ContainerConfig) -> None:
        self.container = container
        docker = container.docker
        self.engine = Engine(
            docker.host,
            docker.container or container.name,
            docker.user,
            IDLE_TIMEOUT_S,
            container.ssh,  # ssh:// engines: the daemon's key and known_hosts
        )
        self._capabilities: Capabilities | None = None
        self._listed: dict[bytes, int] = {}  # folder (b"": the root) -> its listed bytes

    def _tools(self) -> Capabilities:
        if self._capabilities is None:
            self.probe()
        assert self._capabilities is not None
        return self._capabilities

    def probe(self) -> Probe:
        """Ask the container what it offers and read its clock (the SSH probe script).
        Raise ConnectError when the engine or the container cannot be reached."""
        started = time.time()
        result = execs.run(self.engine, PROBE_SCRIPT, max_output=PROBE_OUTPUT)
        self._capabilities = parse_probe(result.stdout, started)
        capabilities = self._capabilities
        return Probe(ContainerClock(capabilities.clock_offset_s), None, capabilities.fast_paths)

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        """One GNU find, else the busybox listing; both parsed by the strict parser. Raise
        ListingError past `max_listing_files` / `max_listing_size`."""
        sync = self.container.sync
        limits = Limits(sync.max_listing_files, sync.max_listing_size)
        root, folders = self.container.root, self.container.folders
        gnu = self._tools().gnu_find
        script = find_script(root, folders) if gnu else busybox_find_script(root, folders)
        try:
            result = execs.run(
                self.engine, script, max_output=limits.size, cancel=cancel, idle_timeout_s=None
            )
        except OutputTooLarge as exc:
            raise ListingError(
                f"the listing is larger than {limits.size} bytes (max_listing_size)"
            ) from exc
        listing = listing_of_find(
            result.stdout, result.stderr, result.status, root, "", reuse, limits
        )
        if not listing.reused:
            self._listed = listed_bytes(listing, trees_of(self.container))
        return listing

    def hashes(
        self, paths: Sequence[bytes], cancel: threading.Event | None = None
    ) -> dict[bytes, str]:
        """One hashing process for all (python3 or sha256sum), else each file read through
        the archive endpoint."""
        if not paths:
            return {}
        root = self.container.root
        if self._tools().remote_hashing:
            stdin = b"\0".join(paths) + b"\0"
            # Silent while it hashes a big file: ended by `cancel`, not by a timeout.
            result = execs.run(
                self.engine, hash_script(root), stdin, cancel=cancel, idle_timeout_s=None
            )
            if result.status not in (0, 1, 123):
                raise RemoteError(f"sha256 in the container failed (exit {result.status})")
            return parse_sha256sum_z(result.stdout, set(paths))
        found: dict[bytes, str] = {}
        for path in paths:
            digest = archive.sha256_of(self.engine, remote_file(root, path), cancel)
            if digest is not None:
                found[path] = digest
        return found

    def prepare_fetch(self) -> None:
        """Nothing to start ahead: an exec costs one local round trip."""

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """One GNU tar stream where the container has it; what it did not deliver (a broken
        or lying tar), and everything in a container without it, through the archive
        endpoint, in the same call."""
        on_fetched, on_bytes, on_start = calls.on_fetched, calls.on_bytes, calls.on_start
        report = FetchReport()
        limiter = limiter_for(self.container)
        earliest = ContainerClock(self._tools().clock_offset_s).surely_passed_ns()
        retry: list[FetchItem] = []

        def outcome(fetched: Fetched) -> None:
            if fetched.temp is not None:
                calls.on_received(fetched.item)
            if fetched.error_kind == FileKind.TRANSFER and not cancel.is_set():
                retry.append(fetched.item)
                report.fallback_reason = report.fallback_reason or fetched.error or ""
            else:
                on_fetched(fetched)

        root = self.container.root
        if self._tools().tar_stream:
            report.transfer = TransferMethod.TAR
            left = fetch_trees(
                self.engine, self.container, self._listed, items, outcome, calls, limiter, cancel
            )
            if len(left) < len(items):
                report.transfer = TransferMethod.ARCHIVE
            items = left
            handed: set[bytes] = set()
            error = ""
            if items:
                landing = Landing(outcome, on_bytes, on_start)
                handed, error, report.refused = tar_fetch(
                    self.engine, root, items, landing, limiter, cancel, earliest
                )
            for item in items:
                if item.remote.path not in handed:
                    kind = FileKind.CANCELLED if cancel.is_set() else FileKind.TRANSFER
                    outcome(
                        Fetched(item, None, error=error or "not in the tar stream", error_kind=kind)
                    )
            report.fallback = len(retry)
            items, retry = retry, []
        else:
            report.transfer = TransferMethod.ARCHIVE
        if items:
            landing = Landing(on_fetched, on_bytes, on_start)
            archive.fetch_all(self.engine, root, items, landing, limiter, cancel, earliest)
        return report

    def fetch_lanes(self, files: int, size: int) -> Lanes:
        """None besides this transport's own fetch."""
        return Lanes()

    @property
    def connections(self) -> int:
        """0: no connection is kept open (one to the engine per request)."""
        return 0

    def delete(self, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
        """One delete script (its inode/size/mtime/ctime checks) where the container has
        python3 or xargs, stat and sha256sum; else the archive endpoint's checks and `rm`."""
        files = [remote for remote in files if remote.path in sha256]
        if not files:
            return Deleted()
        root = self.container.root
        if not self._tools().remote_delete:
            return archive.delete_checked(self.engine, root, files, sha256)
        # Each file is hashed before anything is printed for it: at least 10 MB/s.
        slowest = max(remote.size for remote in files) / HASH_FLOOR_BPS
        result = execs.run(
            self.engine,
            delete_script(root),
            delete_input(files, sha256),
            idle_timeout_s=max(IDLE_TIMEOUT_S, slowest),
        )
        if result.status == 3:
            raise RemoteError(f"root {root} is gone from the container")
        return parse_deleted(result.stdout, {remote.path for remote in files})

    def end_run(self, keep_ready: bool = False) -> None:
        """Nothing is kept between runs."""

    def watch(self) -> WatchFeed:
        """The watcher script on an exec stream of its own."""
        self._tools()
        return DockerWatch.start(
            self.engine,
            self.container.root,
            self.container.folders,
            self.container.ssh.keepalive_s,
        )

    def close(self) -> None:
        """Forget what the probe found (the container may be another one next time)."""
        self._capabilities = None


def trees_of(container: ContainerConfig) -> tuple[bytes, ...]:
    """The folders whose whole archive a fetch may read: the root, else each folder named
    plainly (no `.` or empty component)."""
    folders = [os.fsencode(folder) for folder in container.folders]
    return tuple(f for f in folders if plainly_safe(f)) if folders else (b"",)


def fetch_trees(
    engine: Engine,
    container: ContainerConfig,
    listed: Mapping[bytes, int],
    items: Sequence[FetchItem],
    outcome: Callable[[Fetched], None],
    calls: FetchCallbacks,
    limiter: Limiter,
    cancel: threading.Event,
) -> Sequence[FetchItem]:
    """Fetch the folders most of whose bytes are planned (`tree_groups`; `listed`: what
    the last listing held) through one archive each; return the items left for the tar
    stream (those no archive delivered). A folder's files are checked again once its
    stream is closed, then handed over in a thread of their own while the next streams."""
    base = os.fsencode(container.root.rstrip("/"))
    if limiter.current_rate() is not None or os.path.basename(base) in (b"", b".", b".."):
        return items  # with a bandwidth limit, the limit sets the pace
    units = tree_groups(items, trees_of(container), listed)
    if not units:
        return items
    clock = archive.container_now(engine)  # before any byte is read
    if clock is None:
        return items
    handed: set[bytes] = set()
    lander = _Lander()
    try:
        for unit, group in units.items():
            if cancel.is_set():
                break
            landing = Landing(outcome, calls.on_bytes, calls.on_start)
            # What it refused or did not deliver goes through the tar stream, which says so.
            archive.stream_tree(
                engine, base, unit, group, landing, limiter, cancel, clock, listed[unit]
            )
            received = [got.item for got in landing.ready]
            if received:
                lander.hand_over(landing, *changed_since(engine, container.root, received))
            handed.update(item.remote.path for item in received)
    finally:
        lander.join()
    return [item for item in items if item.remote.path not in handed]


class _Lander:
    """Hands over one landing's files at a time in a thread (made durable, verified, moved
    into place by the run's callbacks) while the caller streams the next folder; what
    broke it is raised by the next call."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def hand_over(self, landing: Landing, changed: set[bytes], unconfirmed: str | None) -> None:
        self.join()
        self.thread = threading.Thread(
            target=self._run, args=(landing, changed, unconfirmed), name="docker-land"
        )
        self.thread.start()

    def _run(self, landing: Landing, changed: set[bytes], unconfirmed: str | None) -> None:
        try:
            landing.hand_over(changed, unconfirmed)
        except BaseException as exc:  # raised again in the fetch's own thread
            self.failure = exc

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure


def _tree_of(path: bytes, trees: Sequence[bytes]) -> bytes | None:
    """The first of `trees` that holds `path` (b"": the root holds all); None if none."""
    for tree in trees:
        if not tree or path.startswith(tree + b"/"):
            return tree
    return None


def _sub_of(path: bytes, tree: bytes) -> bytes:
    """The unit of `path` in `tree`: its subfolder right under the tree (`tree/sub`), or
    `tree/` for a file directly in the tree (`/` in the root)."""
    rest = path[len(tree) + 1 :] if tree else path
    sub, slash, _ = rest.partition(b"/")
    if not slash:
        return tree + b"/" if tree else b"/"
    return tree + b"/" + sub if tree else sub


def listed_bytes(listing: Listing, trees: Sequence[bytes]) -> dict[bytes, int]:
    """Given a listing and the folders it covers, return the bytes listed under each
    folder, each of their subfolders (`tree/sub`) and directly in each (`tree/`)."""
    totals = dict.fromkeys(trees, 0)
    sizes = [(f.path, f.size) for f in listing.files]
    sizes += [(s.path, s.size) for s in listing.skipped]
    for path, size in sizes:
        tree = _tree_of(path, trees)
        if tree is not None:
            totals[tree] += size
            unit = _sub_of(path, tree)
            totals[unit] = totals.get(unit, 0) + size
    return totals


def _worth(group: Sequence[FetchItem], listed: int | None) -> bool:
    """Whether planned files are worth an archive of their folder, which holds `listed`
    bytes: TREE_MIN_FILES to UNIT_MAX_FILES of them, at most UNIT_MAX_BYTES (what a kill
    in the middle of a stream loses: nothing lands before the stream ends), making half
    the folder's bytes or all but ARCHIVE_SLACK."""
    planned = sum(item.remote.size for item in group)
    return (
        listed is not None
        and TREE_MIN_FILES <= len(group) <= UNIT_MAX_FILES
        and planned <= UNIT_MAX_BYTES
        and (2 * planned >= listed or listed - planned <= archive.ARCHIVE_SLACK)
    )


def tree_groups(
    items: Sequence[FetchItem], trees: Sequence[bytes], listed: Mapping[bytes, int]
) -> dict[bytes, list[FetchItem]]:
    """Given the items of a fetch, the folders and their listed bytes (`listed_bytes`),
    return the folders (or subfolders) worth one archive each (`_worth`) and their items:
    the whole folder in one (each archive costs the engine a set-up and its check an
    exec), unless it is too large or its subfolders (and the files directly in it, as one)
    hold UNIT_FILES planned files each on average: then a subfolder at a time (each landed
    while the next streams; the files directly in the folder go through the tar stream)."""
    groups: dict[bytes, list[FetchItem]] = {}
    for item in items:
        tree = _tree_of(item.remote.path, trees)
        if tree is not None:
            groups.setdefault(tree, []).append(item)
    chosen: dict[bytes, list[FetchItem]] = {}
    for tree, group in groups.items():
        subs: dict[bytes, list[FetchItem]] = {}
        for item in group:
            subs.setdefault(_sub_of(item.remote.path, tree), []).append(item)
        if _worth(group, listed.get(tree)) and len(group) < UNIT_FILES * len(subs):
            chosen[tree] = group
            continue
        chosen.update(
            (sub, part)
            for sub, part in subs.items()
            if not sub.endswith(b"/") and _worth(part, listed.get(sub))
        )
    return chosen
