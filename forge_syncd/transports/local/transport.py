"""A folder on this machine as a container (`transport: local`).

`LocalTransport` lists with the same GNU `find` script and strict parser as SSH (run as a
local `sh`), copies in this process (`fetch.py`), hashes and deletes in this process with
the remote scripts' rules (`files.py`), and watches with the same watcher script
(`watch.py`). The source folder is untrusted like a container: its names, sizes and links
are checked the same way, and no path is ever followed through a link. Its clock is ours
(offset 0). The source is only ever read (and, by a purge, unlinked): never renamed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence

from forge_syncd.config.model import ContainerConfig
from forge_syncd.limits.registry import limiter_for
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import ConnectError, ListingError, RemoteError
from forge_syncd.remote.transport import Lanes, Probe, WatchFeed
from forge_syncd.remote.types import (
    Deleted,
    DiskSpace,
    FetchCallbacks,
    FetchItem,
    FetchReport,
    Limits,
    Listing,
    RemoteFile,
    TransferMethod,
)
from forge_syncd.transports.local import process
from forge_syncd.transports.local.beneath import open_root
from forge_syncd.transports.local.fetch import Plan, copy_all
from forge_syncd.transports.local.files import delete_files, hash_files
from forge_syncd.transports.local.watch import LocalWatch
from forge_syncd.transports.shell.listing import find_script, listing_of_find
from forge_syncd.transports.shell.result import OutputTooLarge

FAST_PATHS = frozenset({"find", "hash", "delete"})


class LocalTransport:
    """The local `Transport`: the container's `root` is a folder of this machine."""

    kind = "local"

    def __init__(self, container: ContainerConfig) -> None:
        self.container = container
        self.root = container.root

    def probe(self) -> Probe:
        """Our clock (offset 0), the room left where the source is, the fast paths. Raise
        ConnectError when the root is not a readable folder (status: unreachable)."""
        try:
            os.close(open_root(self.root))
            space = os.statvfs(self.root)
        except OSError as exc:
            raise ConnectError(
                f"root {self.root} is not a readable folder: {exc.strerror}"
            ) from exc
        free_inodes = space.f_favail if space.f_files else None
        disk = DiskSpace(space.f_bavail * space.f_frsize, free_inodes)
        return Probe(ContainerClock(0.0), disk, FAST_PATHS)

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        """One `find` (the SSH transport's script and parser). Raise ListingError if it
        fails or goes past `max_listing_files` / `max_listing_size`."""
        sync = self.container.sync
        limits = Limits(sync.max_listing_files, sync.max_listing_size)
        script = find_script(self.root, self.container.folders)
        try:
            result = process.run(script, max_output=limits.size, cancel=cancel)
        except OutputTooLarge as exc:
            raise ListingError(
                f"the listing is larger than {limits.size} bytes (max_listing_size)"
            ) from exc
        except RemoteError as exc:
            raise ListingError(f"listing failed: {exc}") from exc
        return listing_of_find(
            result.stdout, result.stderr, result.status, self.root, "", reuse, limits
        )

    def hashes(
        self, paths: Sequence[bytes], cancel: threading.Event | None = None
    ) -> dict[bytes, str]:
        """sha256 of each file as it is now (a vanished one is left out)."""
        root_fd = self._open_root()
        try:
            return hash_files(root_fd, paths, cancel)
        finally:
            os.close(root_fd)

    def prepare_fetch(self) -> None:
        """Nothing to start ahead: a local copy costs no round trip."""

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """Copy each item into its temporary file (`fetch.py`), `transfers` at a time."""
        report = FetchReport(transfer=TransferMethod.COPY)
        root_fd = self._open_root()
        try:
            sync = self.container.sync
            plan = Plan(root_fd, sync.transfers, limiter_for(self.container))
            copy_all(plan, items, calls, cancel)
        finally:
            os.close(root_fd)
        return report

    def fetch_lanes(self, files: int, size: int) -> Lanes:
        """None besides this transport's own fetch."""
        return Lanes()

    @property
    def connections(self) -> int:
        """0: a folder on this machine: no connection."""
        return 0

    def delete(self, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
        """Delete each file only while it is the listed file and holds the given bytes."""
        root_fd = self._open_root()
        try:
            return delete_files(root_fd, files, sha256)
        finally:
            os.close(root_fd)

    def end_run(self, keep_ready: bool = False) -> None:
        """Nothing is kept between runs."""

    def watch(self) -> WatchFeed:
        """The watcher script as a local process (inotify on this machine)."""
        self._open_root_checked()
        return LocalWatch.start(self.root, self.container.folders, self.container.ssh.keepalive_s)

    def close(self) -> None:
        """Nothing stays open between calls."""

    def _open_root(self) -> int:
        try:
            return open_root(self.root)
        except OSError as exc:
            raise ConnectError(
                f"root {self.root} is not a readable folder: {exc.strerror}"
            ) from exc

    def _open_root_checked(self) -> None:
        os.close(self._open_root())
