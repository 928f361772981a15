"""A container reached through the Docker Engine API (`transport: docker`).

`DockerTransport` runs the same scripts as SSH (`transports/shell/`) in the container
through exec streams (`engine.py`: the Engine API over its unix socket, no dependency) and
reads their output with the same strict parsers and bounds: the container is as untrusted
as an SSH box. Fast paths where the container has the tools (GNU find, one GNU tar stream,
python3 or sha256sum hashes and deletes, inotify watcher); else a busybox `find` + `stat`
listing and the engine's archive endpoint, one file at a time (`archive.py`). Where a fetch
plans most of a folder's listed bytes (a first sync), that folder comes in one archive of
the engine's instead of the exec's tar stream (`trees.py`). A missing or stopped
container is ConnectError (status: unreachable) with the engine's message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from forge_syncd.config.model import ContainerConfig
from forge_syncd.errorkinds import FileKind
from forge_syncd.limits.registry import Limiter, limiter_for
from forge_syncd.mtimes import parse_seconds
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
from forge_syncd.transports.docker.fetch import Landing, tar_fetch
from forge_syncd.transports.docker.trees import fetch_trees, listed_bytes, trees_of
from forge_syncd.transports.docker.watch import DockerWatch
from forge_syncd.transports.receive import remote_file
from forge_syncd.transports.shell.delete import delete_input, delete_script, parse_deleted
from forge_syncd.transports.shell.hashing import hash_script, parse_sha256sum_z
from forge_syncd.transports.shell.listing import find_script, listing_of_find
from forge_syncd.transports.shell.probe import (
    PROBE_OUTPUT,
    PROBE_SCRIPT,
    Capabilities,
    split_probe,
    with_listing,
)
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult

IDLE_TIMEOUT_S = 60.0
PROBE_REUSE_S = 30.0  # a probe's answers serve the run that made it, at most this long
# Its clock reading serves the archives as their read-after clock at most this long (older,
# a file changed in between might pass as one from the future: mtimes.FUTURE_SLACK_NS).
CLOCK_FRESH_S = 5.0
# The probe's clock to the nanosecond where `date` has %N: the time before which a run's
# archives read nothing (busybox prints no digits after the point, or %N: not used).
CLOCK_LINE = "printf 'clock %s\\n' \"$(date +%s.%N 2>/dev/null)\"\n"
HASH_FLOOR_BPS = 10_000_000  # the slowest a container may hash one file (as over SSH)


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
        self._probed: Probe | None = None  # this run's (an exec each: ~60 ms)
        self._probed_at = 0.0  # time.monotonic() then
        # The container's clock (ns) as the probe read it, and time.monotonic() before
        # that probe started.
        self._clock: tuple[int, float] | None = None
        self._listed: dict[bytes, int] = {}  # folder (b"": the root) -> its listed bytes

    def _tools(self) -> Capabilities:
        if self._capabilities is None:
            self.probe()
        assert self._capabilities is not None
        return self._capabilities

    def probe(self) -> Probe:
        """Ask the container what it offers and read its clock (the SSH probe script), once
        a run (`end_run` forgets it; a run's listing asks in the same exec). Raise
        ConnectError when the engine or the container cannot be reached."""
        probed = self._probed
        if probed is None or self._stale_probe():
            probed = self._probe_and_list(None, 0)[0]
        return probed

    def _stale_probe(self) -> bool:
        """No probe in this run (or one older than PROBE_REUSE_S, a cleanup's)."""
        return self._probed is None or time.monotonic() - self._probed_at > PROBE_REUSE_S

    def _probe_and_list(
        self, listing_script: str | None, max_listing: int, cancel: threading.Event | None = None
    ) -> tuple[Probe, ScriptResult | None]:
        """`run_probe`, kept as this run's probe; return it and the listing."""
        before = time.monotonic()
        found = run_probe(self.engine, listing_script, max_listing, cancel)
        capabilities, clock_ns, listing = found
        probed = Probe(ContainerClock(capabilities.clock_offset_s), None, capabilities.fast_paths)
        self._capabilities, self._probed, self._probed_at = capabilities, probed, time.monotonic()
        self._clock = None if clock_ns is None else (clock_ns, before)
        return probed, listing

    def _recent_clock_ns(self) -> int | None:
        """The container's clock as this run's probe read it, if that was surely at most
        CLOCK_FRESH_S ago (else None: the archive reads a clock of its own)."""
        clock = self._clock
        if clock is None or time.monotonic() - clock[1] > CLOCK_FRESH_S:
            return None
        return clock[0]

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        """One GNU find, else the busybox listing; both parsed by the strict parser. Raise
        ListingError past `max_listing_files` / `max_listing_size`."""
        sync = self.container.sync
        limits = Limits(sync.max_listing_files, sync.max_listing_size)
        root, folders = self.container.root, self.container.folders
        try:
            result = None
            if self._stale_probe() and (cancel is None or not cancel.is_set()):
                result = self._probe_and_list(find_script(root, folders), limits.size, cancel)[1]
            if result is None:
                gnu = self._tools().gnu_find
                script = find_script(root, folders) if gnu else busybox_find_script(root, folders)
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
        return container_hashes(self.engine, self.container.root, paths, self._tools(), cancel)

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
                self.engine,
                self.container,
                self._listed,
                items,
                outcome,
                calls,
                limiter,
                cancel,
                self._recent_clock_ns(),
            )
            if len(left) < len(items):
                report.transfer = TransferMethod.ARCHIVE
            items = left
            args = (self.engine, root, items, outcome, calls, limiter, cancel, earliest)
            report.refused = by_tar(*args)
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
        """The next run probes again (the container may have been replaced meanwhile)."""
        self._probed = self._clock = None

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
        self._capabilities = self._probed = self._clock = None


def by_tar(
    engine: Engine,
    root: str,
    items: Sequence[FetchItem],
    outcome: Callable[[Fetched], None],
    calls: FetchCallbacks,
    limiter: Limiter,
    cancel: threading.Event,
    earliest_now: int,
) -> list[tuple[bytes, str]]:
    """Fetch `items` through one GNU tar stream (`tar_fetch`), each to `outcome`: what it
    did not deliver as a failure (to be fetched again); return the members it refused."""
    handed: set[bytes] = set()
    error = ""
    refused: list[tuple[bytes, str]] = []
    if items:
        landing = Landing(outcome, calls.on_bytes, calls.on_start)
        args = (engine, root, items, landing, limiter, cancel, earliest_now)
        handed, error, refused = tar_fetch(*args)
    for item in items:
        if item.remote.path not in handed:
            kind = FileKind.CANCELLED if cancel.is_set() else FileKind.TRANSFER
            outcome(Fetched(item, None, error=error or "not in the tar stream", error_kind=kind))
    return refused


def container_hashes(
    engine: Engine,
    root: str,
    paths: Sequence[bytes],
    tools: Capabilities,
    cancel: threading.Event | None = None,
) -> dict[bytes, str]:
    """The sha256 of each of `paths` (under `root`) that is a file: see `hashes`."""
    if tools.remote_hashing:
        stdin = b"\0".join(paths) + b"\0"
        # Silent while it hashes a big file: ended by `cancel`, not by a timeout.
        result = execs.run(engine, hash_script(root), stdin, cancel=cancel, idle_timeout_s=None)
        if result.status not in (0, 1, 123):
            raise RemoteError(f"sha256 in the container failed (exit {result.status})")
        return parse_sha256sum_z(result.stdout, set(paths))
    found: dict[bytes, str] = {}
    for path in paths:
        digest = archive.sha256_of(engine, remote_file(root, path), cancel)
        if digest is not None:
            found[path] = digest
    return found


def run_probe(
    engine: Engine,
    listing_script: str | None,
    max_listing: int,
    cancel: threading.Event | None = None,
) -> tuple[Capabilities, int | None, ScriptResult | None]:
    """Probe the container (what it offers, its clock, also to the nanosecond where it
    can); with `listing_script`, run that GNU find listing in the same exec (an exec costs
    ~60 ms) and return its result too (None where the container has no GNU find). Raise
    OutputTooLarge past `max_listing` bytes of listing."""
    started = time.time()
    result = execs.run(
        engine,
        with_listing(PROBE_SCRIPT + CLOCK_LINE, listing_script),
        max_output=PROBE_OUTPUT + max_listing,
        cancel=cancel,  # a listing may take long: stop, pause and reload end it
        # A listing may go quiet for a while on a slow disk (as `list`).
        idle_timeout_s=None if listing_script is not None else -1.0,
    )
    capabilities, answers, listing = split_probe(result, started)
    return capabilities, probe_clock_ns(answers), listing


def probe_clock_ns(answers: bytes) -> int | None:
    """The container's clock as the probe's `clock` line read it (ns), if it has a
    fraction of a second (GNU date); None otherwise."""
    for line in answers.splitlines():
        stamp = line[6:].strip() if line.startswith(b"clock ") else b""
        if b"." in stamp and not stamp.startswith(b"-"):
            return parse_seconds(stamp)
    return None
