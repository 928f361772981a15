"""A first sync's fast path for Docker: folders fetched whole through the engine's archive
endpoint (`archive.stream_tree`), ~4x faster than a tar through an exec stream.

`tree_groups` picks the folders (units) most of whose listed bytes a fetch plans;
`fetch_trees` streams each through one archive, checks its files again once the stream is
closed (the engine does not say that a file changed while it read it) and lands them on a
thread of its own (`_Lander`: made durable while they are checked, handed over while the
next folder streams)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence

from forge_syncd.config.model import ContainerConfig
from forge_syncd.limits.registry import Limiter
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, Listing
from forge_syncd.transports.docker import archive
from forge_syncd.transports.docker.engine import Engine
from forge_syncd.transports.docker.fetch import Landing, changed_since
from forge_syncd.transports.shell.listing import plainly_safe

# A folder's planned files come in one archive of the whole folder (`tree_groups`) when they
# are at least this many and make half its listed bytes, or all but ARCHIVE_SLACK of them.
TREE_MIN_FILES = 16
UNIT_FILES = 256  # planned files per subfolder, on average, to fetch one at a time
UNIT_MAX_FILES = 25_000
UNIT_MAX_BYTES = 1024**3


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
    clock_ns: int | None = None,
) -> Sequence[FetchItem]:
    """Fetch the folders most of whose bytes are planned (`tree_groups`; `listed`: what
    the last listing held) through one archive each; return the items left for the tar
    stream (those no archive delivered). `clock_ns`: the container's clock read before
    anything was listed (None: read it now). A folder's files are checked again once its
    stream is closed, then handed over in a thread of their own while the next streams."""
    base = os.fsencode(container.root.rstrip("/"))
    if limiter.current_rate() is not None or os.path.basename(base) in (b"", b".", b".."):
        return items  # with a bandwidth limit, the limit sets the pace
    units = tree_groups(items, trees_of(container), listed)
    if not units:
        return items
    clock = archive.container_now(engine) if clock_ns is None else clock_ns  # before any read
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
                deliver = lander.land(landing)  # made durable while they are checked
                verdict: tuple[set[bytes], str | None] = (set(), "the check did not run")
                try:
                    verdict = changed_since(engine, container.root, received)
                finally:
                    deliver(*verdict)
            handed.update(item.remote.path for item in received)
    finally:
        lander.join()
    return [item for item in items if item.remote.path not in handed]


Verdict = Callable[[set[bytes], str | None], None]


class _Lander:
    """Lands one landing's files at a time in a thread: made durable at once, then, given
    the check's verdict (changed, unconfirmed), verified and moved into place by the run's
    callbacks, while the caller checks them and streams the next folder; what broke it is
    raised by the next call."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    def land(self, landing: Landing) -> Verdict:
        """Start making `landing`'s files durable; return what hands them over once they
        are checked (called exactly once, also when the check failed)."""
        self.join()
        given: list[tuple[set[bytes], str | None]] = []
        checked = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(landing, given, checked), name="docker-land"
        )
        thread.start()
        self.thread = thread

        def deliver(changed: set[bytes], unconfirmed: str | None) -> None:
            given.append((changed, unconfirmed))
            checked.set()

        return deliver

    def _run(
        self, landing: Landing, given: list[tuple[set[bytes], str | None]], checked: threading.Event
    ) -> None:
        try:
            landing.make_durable()
            checked.wait()
            landing.hand_over(*given[0])
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
