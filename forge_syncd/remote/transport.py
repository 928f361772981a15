"""What a sync, cleanup, drain or live run needs from a container: the transport interface.

`Transport` is one container as a run sees it (list, hash, fetch, delete, watch, and the
probe that reads its clock); `WatchFeed` is its running live watcher; `FetchLane` one way
to fetch over, of the several a transport may offer a run with much to fetch (`Lanes`).
All speak only the package's own types (`remote/types.py`): nothing here names paramiko or
a shell. SSH is one implementation (`SshTransport`); the unit tests drive the runs with an
in-memory one (`tests/support/fake_remote.py`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.types import (
    Deleted,
    DiskSpace,
    FetchCallbacks,
    FetchItem,
    FetchReport,
    Listing,
    RemoteFile,
    WatchRecord,
)


@dataclass(frozen=True)
class Probe:
    """What connecting taught us: the container's clock, its disk (None where the transport
    cannot tell), and the fast paths it offers (for status and logs only)."""

    clock: ContainerClock
    disk: DiskSpace | None = None
    fast_paths: frozenset[str] = frozenset()


class FetchLane(Protocol):
    """An extra way to fetch over, besides the transport itself: a connection of its own,
    opened for a run with much to fetch (`Transport.fetch_lanes`)."""

    def ready(self) -> None:
        """Open what the lane fetches over (its connection). Raise LaneRefused if it cannot
        be opened (the server refused one more login): no error of the run."""

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """Once ready, fetch every item as `Transport.fetch` does (each handed to
        `calls.on_fetched` once, from this lane's threads)."""


@dataclass(frozen=True)
class Lanes:
    """The extra lanes a fetch may be spread over, besides the transport itself."""

    extra: Sequence[FetchLane] = ()


class Transport(Protocol):
    """One container as a run sees it. Every method may connect first; every failure is a
    RemoteError (`remote/errors.py`) with its ErrorKind."""

    @property
    def kind(self) -> str:
        """Which transport this is ("ssh")."""

    def probe(self) -> Probe:
        """Return the container's clock and what it offers (connects if needed). Raise
        RemoteError."""

    def list(
        self, reuse: Callable[[bytes], bool] | None = None, cancel: threading.Event | None = None
    ) -> Listing:
        """Return the listing. `reuse`, given the raw listing bytes, may answer True to skip
        parsing them (the Listing is then `reused` and empty). Raise RemoteError."""

    def hashes(
        self, paths: Sequence[bytes], cancel: threading.Event | None = None
    ) -> dict[bytes, str]:
        """Return {path: sha256} of remote files (a vanished file is left out). Raise
        RemoteError, also when `cancel` is set before it is done."""

    def prepare_fetch(self) -> None:
        """Get ready for a fetch that is likely to follow (start what takes a round trip)."""

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """Fetch every item into its temporary file, calling `calls.on_fetched` once per
        item (see `FetchCallbacks` for what else it is told)."""

    def fetch_lanes(self, files: int, size: int) -> Lanes:
        """Return, at once, the extra lanes to spread a fetch of `files` files and `size`
        bytes over besides the transport itself: the extra connections that pay on this
        path (`sync.connections`; none for a transport that has no such thing), each opened
        by its `ready` and left open until `end_run`. Raise RemoteError (the transport's
        own connection failed)."""

    @property
    def connections(self) -> int:
        """How many connections to the container are open now (the metrics' gauge)."""

    def delete(self, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> Deleted:
        """Delete each file only if its size and mtime are still the listed ones and its
        bytes, hashed on the container then, hash to `sha256[path]` (a file missing from
        `sha256` is never deleted); return what was deleted and what holds other bytes."""

    def end_run(self, keep_ready: bool = False) -> None:
        """Release what a run left prepared and did not use (and close the run's extra
        connections); with `keep_ready` (live mode: the next run may come any second) keep,
        or start, what the next fetch needs."""

    def watch(self) -> WatchFeed:
        """Start the container's live watcher (connects if needed). Raise RemoteError."""

    def close(self) -> None:
        """Disconnect (the next call connects again)."""


class WatchFeed(Protocol):
    """A running live watcher (`watcher.WatchStream`), as the daemon's live mode reads it."""

    @property
    def backend(self) -> str:
        """Which watcher runs (inotifywait, python3, find); empty until it is established."""

    @property
    def received(self) -> int:
        """How many bytes the watcher has sent so far (its budget counts them)."""

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        """Wait up to `timeout` s; return the records that came and problems found (one
        reason per bad record). Raise WatchEnded when the watcher is gone."""

    def close(self) -> None:
        """Stop the watcher (its remote processes end with the channel)."""
