"""One sync run of one container: list, decide, fetch, verify, rename, record.

`plan_sync` is the pure decision (which remote files to fetch, adopt or skip, and why);
`SyncRun` does the I/O around it. A file counts as synced only after its bytes were
fsynced under a temporary name, checked (size; sha256 under `verify: sha256`), renamed into
place with the remote mtime, its folder fsynced, and the manifest committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from forge_syncd import localfs
from forge_syncd.config.model import ContainerConfig
from forge_syncd.events import records
from forge_syncd.manifest import FileRecord, Manifest, SyncedFile, VersionMove
from forge_syncd.paths import display, local_path
from forge_syncd.patterns import FileFilter
from forge_syncd.progress import Progress
from forge_syncd.remote.errors import AuthError, ConnectError, HostKeyError
from forge_syncd.remote.hashing import remote_sha256, sftp_sha256
from forge_syncd.remote.listing import (
    MTIME_OUT_OF_RANGE,
    Limits,
    Listing,
    RemoteFile,
    Skipped,
    list_with_find,
    list_with_sftp,
)
from forge_syncd.remote.session import RemoteSession
from forge_syncd.remote.tarfetch import TarStrategy, tar_script
from forge_syncd.remote.transfer import (
    Fetched,
    FetchItem,
    RateLimiter,
    SftpStrategy,
    TransferStrategy,
    remote_file,
)
from forge_syncd.runs import RunFailed, RunOutcome, run_job
from forge_syncd.versions import Versions

NS = 1_000_000_000
DISK_RESERVE = 64 * 1024 * 1024  # never fill the library's disk to the last byte
INODE_RESERVE = 1000  # nor use its last inodes
COMMIT_EVERY_FILES = 256
COMMIT_EVERY_S = 1.0
COLLECT_S = 0.05
SYNCFS_OVER_FOLDERS = 4


def list_container(
    session: RemoteSession,
    container: ContainerConfig,
    reuse: Callable[[bytes], bool] | None = None,
    cancel: threading.Event | None = None,
) -> Listing:
    """Return the container's listing: one GNU find where the remote has it, else SFTP
    (stopped by `cancel`). `reuse`: see `list_with_find`. Raise ListingError past the
    container's `max_listing_files` / `max_listing_size`."""
    connection, capabilities = session.get()
    limits = Limits(container.sync.max_listing_files, container.sync.max_listing_size)
    if capabilities.gnu_find:
        return list_with_find(connection, container.root, container.folders, reuse, limits)
    sftp = connection.open_sftp()
    try:
        return list_with_sftp(sftp, container.root, container.folders, limits, cancel)
    finally:
        sftp.close()


def remote_path(container: ContainerConfig, relative: bytes) -> bytes:
    """Return the absolute remote path of a file given relative to the container's root."""
    return remote_file(container.root, relative)


def local_state(
    container_dir: bytes, files: Iterable[RemoteFile], wants: FileFilter
) -> dict[bytes, tuple[int, int]]:
    """Return {path: (size, mtime_ns)} of the local copies of the wanted remote files.

    The paths come from a listing, which refused every unsafe name already, so they are
    joined directly (this runs for every remote file on every poll)."""
    found: dict[bytes, tuple[int, int]] = {}
    for remote in files:
        if wants.wants(remote.path):
            here = localfs.local_size(container_dir + b"/" + remote.path)
            if here is not None:
                found[remote.path] = here
    return found


class LocalLookup(Protocol):
    def get(self, path: bytes, /) -> tuple[int, int] | None:
        """Return the local copy's (size, mtime_ns), or None if there is none."""

    def has_size(self, path: bytes, size: int, /) -> bool:
        """Return whether a local copy of `size` bytes is there."""


class LocalCheck:
    """Loads a container's manifest rows and checks (`lstat`) that every synced file's local
    copy is still there with its size, on a thread of its own, started before the remote
    listing: the check runs while the remote lists, when this process would only wait."""

    def __init__(self, manifest: Manifest, container: str, container_dir: bytes) -> None:
        self.container_dir = container_dir
        self.version = manifest.files_version(container)
        self.records: dict[bytes, FileRecord] = {}
        self.mismatched: set[bytes] = set()  # synced, but missing locally or of another size
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._check, args=(manifest, container), name=f"check-{container}", daemon=True
        )
        self._thread.start()

    def _check(self, manifest: Manifest, container: str) -> None:
        try:
            self.records = manifest.records(container)
            base = self.container_dir + b"/"  # recorded paths were checked when listed
            for path, record in self.records.items():
                if record.state == "synced":
                    here = localfs.local_size(base + path)
                    if here is None or here[0] != record.size:
                        self.mismatched.add(path)
        except BaseException as exc:  # handed to the run's thread by wait()
            self._error = exc

    def wait(self) -> LocalCheck:
        """Return self once the check is done; raise what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self

    def copies(self) -> CheckedCopies:
        self.wait()
        return CheckedCopies(self.container_dir, self.records, self.mismatched)


class CheckedCopies:
    """Local copies as a plan sees them: a synced file's size as checked by LocalCheck, any
    other path looked up (lstat) when asked, so a plan of 100,000 files never holds all
    their local sizes at once."""

    def __init__(
        self, container_dir: bytes, records: dict[bytes, FileRecord], mismatched: set[bytes]
    ) -> None:
        self.container_dir = container_dir
        self.records = records
        self.mismatched = mismatched

    def get(self, path: bytes, /) -> tuple[int, int] | None:
        # Listing paths were checked already (unsafe names refused), so joined directly.
        return localfs.local_size(self.container_dir + b"/" + path)

    def has_size(self, path: bytes, size: int, /) -> bool:
        record = self.records.get(path)
        if record is not None and record.state == "synced" and record.size == size:
            return path not in self.mismatched
        here = self.get(path)
        return here is not None and here[0] == size


@dataclass(frozen=True)
class ListingMemo:
    """What a sync run that found nothing to fetch listed, so that the next run whose
    listing has the very same bytes, under the same config and manifest rows, skips parsing
    and planning (a no-change poll). The local copies are still checked on every run."""

    digest: bytes
    container: ContainerConfig
    manifest_version: tuple[int, int]
    remote_files: int
    remote_bytes: int
    skipped: tuple[Skipped, ...]  # what the listing refused, logged on every run
    plan_skipped: tuple[tuple[RemoteFile, str], ...]  # too large: logged on every run


MEMO_MAX_MISMATCHES = 64  # past this many missing local copies, plan instead of searching


class ContainerRun:
    """What every run of one container holds: its config, folders, state and log.
    Subclasses implement `run()`."""

    def __init__(
        self,
        container: ContainerConfig,
        media_root: bytes,
        manifest: Manifest,
        session: RemoteSession,
        progress: Progress,
        cancel: threading.Event,
        log: Any,
        run_id: str = "",
    ) -> None:
        self.run_id = run_id
        self.container = container
        self.container_dir = os.path.join(media_root, container.name.encode())
        self.manifest = manifest
        self.session = session
        self.progress = progress
        self.cancel = cancel
        self.log = log
        self.outcome = RunOutcome()
        self.versions = Versions(manifest, container.name, self.container_dir, run_id, log)

    def run(self) -> RunOutcome:
        raise NotImplementedError


def same_second(a_ns: int, b_ns: int) -> bool:
    """Compare mtimes at whole seconds: SFTP reports only seconds, find reports nanoseconds."""
    return a_ns // NS == b_ns // NS


@dataclass
class SyncPlan:
    fetch: list[RemoteFile] = field(default_factory=list)
    adopt: list[RemoteFile] = field(default_factory=list)
    skipped: list[tuple[RemoteFile, str]] = field(default_factory=list)
    forget: list[RemoteFile] = field(default_factory=list)
    future: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # (size, mtime_ns)
    unchanged: int = 0
    wanted: list[RemoteFile] = field(default_factory=list)
    forget_suspended: int = 0  # missing copies refetched: too many gone at once to forget


# `on_local_delete: forget` is suspended for a run in which more than this share of a
# container's synced files (and more than FORGET_GUARD_MIN) are missing at once: that is an
# unmounted or wiped library, not a user culling images, and forgetting would let cleanup
# purge the only copies.
FORGET_GUARD_SHARE = 0.5
FORGET_GUARD_MIN = 20
# A file whose mtime is further than this ahead of the container's clock is "from the
# future" (touched, copied with its times, a clock that stepped back): waiting for `settle`
# would wait until the clock catches up (for ever, in the year 2286), so it is ready once
# two looks in a row saw the same size and mtime. Closer than this is clock noise (offsets
# under 2 s are not corrected) and just settles.
FUTURE_SLACK_NS = 10 * NS


def plan_sync(
    files: Iterable[RemoteFile],
    records: dict[bytes, FileRecord],
    local: LocalLookup,
    wants: FileFilter | None,
    now_ns: int,
    settle_ns: int,
    max_size: int,
    forget: bool = False,
    seen_future: Mapping[bytes, tuple[int, int]] | None = None,
) -> SyncPlan:
    """Decide, for each remote file, whether to fetch it, adopt the local copy, forget it
    or skip it.

    Given the listing, the manifest rows, the local (size, mtime_ns) of wanted paths that
    exist locally, the include/exclude filter (None: the listing is already filtered), the
    remote "now" and whether `on_local_delete` is `forget`, return a SyncPlan:
    - unchanged: the manifest has the same (size, mtime) and the local copy has that size,
      or the file was forgotten (deleted from the library by the user) and is unchanged;
    - fetch: new or changed on the remote, or its local copy is missing or of another size;
    - forget (with `forget`): synced and unchanged, but its local copy is gone: the user
      deleted it, so it is not fetched again (unless too many are gone at once, see
      FORGET_GUARD_SHARE: then they are fetched and counted in `forget_suspended`);
    - adopt: new to the manifest, but a local copy of the same size and mtime is already
      there (a previous crash after rename, or a library first filled by rsync);
    - skipped: larger than `max_size`, or modified within `settle` (still being written),
      or with an mtime ahead of the remote "now" (`mtime_in_future`) and not seen with the
      same size and mtime by the last look (`seen_future`, that look's `plan.future`).
    A path whose local copy holds other bytes is fetched: the sync moves that copy into
    `.versions/` before the new file takes its place (versions.py).
    """
    plan = SyncPlan()
    synced = 0
    for remote in files:
        if wants is not None and not wants.wants(remote.path):
            continue
        plan.wanted.append(remote)
        record = records.get(remote.path)
        known = (
            record is not None
            and record.size == remote.size
            and same_second(record.mtime_ns, remote.mtime_ns)
        )
        if known and record is not None and record.state == "forgotten":
            plan.unchanged += 1
        elif known and local.has_size(remote.path, remote.size):
            plan.unchanged += 1
            synced += 1
        elif remote.size > max_size:
            plan.skipped.append((remote, "too_large"))
        elif not known and (wait := _waiting(remote, now_ns, settle_ns, seen_future, plan)):
            plan.skipped.append((remote, wait))
        elif (
            not known
            and (here := local.get(remote.path)) is not None
            and here[0] == remote.size
            and same_second(here[1], remote.mtime_ns)
        ):
            plan.adopt.append(remote)
        elif (
            forget
            and known
            and record is not None
            and record.state == "synced"
            and local.get(remote.path) is None
        ):
            plan.forget.append(remote)
        else:
            plan.fetch.append(remote)
    missing = len(plan.forget)
    if missing > FORGET_GUARD_MIN and missing > FORGET_GUARD_SHARE * (synced + missing):
        plan.fetch += plan.forget
        plan.forget, plan.forget_suspended = [], missing
    return plan


def _waiting(
    remote: RemoteFile,
    now_ns: int,
    settle_ns: int,
    seen_future: Mapping[bytes, tuple[int, int]] | None,
    plan: SyncPlan,
) -> str | None:
    """Return why a new or changed file is not ready yet (None: it is ready); remember a
    file from the future in `plan.future` for the next look."""
    if remote.mtime_ns <= now_ns - settle_ns:
        return None
    if remote.mtime_ns <= now_ns + FUTURE_SLACK_NS:
        return "settling"
    seen = (remote.size, remote.mtime_ns)
    plan.future[remote.path] = seen
    return None if seen_future and seen_future.get(remote.path) == seen else "mtime_in_future"


class DiskFull(RunFailed):
    kind = "disk_full"


class VerifyFailed(RunFailed):
    kind = "verify"


class SyncRun(ContainerRun):
    """The I/O of one sync run of one container."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote_hashes: dict[bytes, str] = {}
        self._done: queue.SimpleQueue[SyncedFile | Fetched] = queue.SimpleQueue()
        self._moves: dict[bytes, list[VersionMove]] = {}  # made for a path, not yet recorded
        self._moves_lock = threading.Lock()

    def run(self) -> RunOutcome:
        """Run the whole sync; return its outcome. Raise RunFailed or RemoteError."""
        os.makedirs(self.container_dir, mode=localfs.DIR_MODE, exist_ok=True)
        if not self.session.temp_files_checked:
            removed = localfs.remove_stale_temp_files(self.container_dir)
            self.session.temp_files_checked = True
            if removed:
                self.log.info("stale_temp_files_removed", count=removed)
        self.outcome.versions += self.versions.recover()
        if self.session.future_seen is None:  # first run on this session: as last recorded
            self.session.future_seen = self.manifest.future_files(self.container.name)
        connection, capabilities = self.session.get()
        check = LocalCheck(self.manifest, self.container.name, self.container_dir)
        memo = self.session.listing_memo
        digest = bytearray()
        tar = tar_script(self.container.root)

        def reuse(output: bytes) -> bool:
            if self._same_as(memo, check, output, digest):
                return True
            if capabilities.tar_stream:  # something may need fetching: start tar's shell
                connection.prepare(tar)  # now, while this run parses and plans
            return False

        try:
            outcome = self._sync(
                self._list(reuse), memo, check, capabilities.clock_offset_s, digest
            )
        finally:
            connection.discard(tar)  # unless the fetch used it
        self.versions.prune(self.container.sync.keep_versions_s)
        return outcome

    def _sync(
        self,
        listing: Listing,
        memo: object,
        check: LocalCheck,
        clock_offset_s: float,
        digest: bytearray,
    ) -> RunOutcome:
        self.outcome.details["listing"] = listing.method
        self.outcome.details["listing_reused"] = listing.reused
        if listing.reused and isinstance(memo, ListingMemo):
            self._log_skipped(memo.skipped, memo.plan_skipped)
            self.outcome.remote_files, self.outcome.remote_bytes = (
                memo.remote_files,
                memo.remote_bytes,
            )
            plan = SyncPlan()
        else:
            plan = self._plan(listing, clock_offset_s, check.copies())
            self.outcome.remote_files = len(plan.wanted)
            self.outcome.remote_bytes = sum(f.size for f in plan.wanted)
            self.session.listing_memo = self._memo(listing, plan, bytes(digest), check.version)
        self._forget(plan)
        self._check_space(plan.fetch)
        if self.container.sync.verify == "sha256" and (plan.fetch or plan.adopt):
            self._hash_remote([*plan.fetch, *plan.adopt])
        fetch = [*plan.fetch, *self._adopt(plan.adopt)]
        waiting = [*fetch, *(remote for remote, reason in plan.skipped if reason == "settling")]
        self.outcome.details["planned"] = (len(waiting), sum(f.size for f in waiting))
        self.progress.begin("sync", len(fetch), sum(f.size for f in fetch))
        try:
            self._fetch(fetch)
        finally:
            self.progress.end()
        return self.outcome

    def _same_as(self, memo: object, check: LocalCheck, output: bytes, digest: bytearray) -> bool:
        """Given the last run's memo and this listing's raw output, return whether that
        run's plan holds unchanged: same bytes, config and manifest rows, and no local copy
        of a listed file gone missing since. Leave the output's digest in `digest`."""
        digest[:] = hashlib.blake2b(output, digest_size=16).digest()
        if not (
            isinstance(memo, ListingMemo)
            and memo.digest == digest
            and memo.container == self.container
            and memo.manifest_version == check.version
        ):
            return False
        mismatched = check.wait().mismatched
        # A listed path appears in the output as a whole field: NUL, "./", path, NUL.
        return len(mismatched) <= MEMO_MAX_MISMATCHES and not any(
            b"\0./" + path + b"\0" in output for path in mismatched
        )

    def _memo(
        self, listing: Listing, plan: SyncPlan, digest: bytes, version: tuple[int, int]
    ) -> ListingMemo | None:
        """Return what the next run may reuse: only a find listing whose plan had nothing
        to fetch, adopt or wait for (a plan that depends on nothing but its inputs)."""
        if listing.method != "find" or not digest or plan.fetch or plan.adopt or plan.forget:
            return None
        if any(reason != "too_large" for _, reason in plan.skipped):
            return None
        return ListingMemo(
            digest,
            self.container,
            version,
            len(plan.wanted),
            sum(f.size for f in plan.wanted),
            tuple(listing.skipped),
            tuple(plan.skipped),
        )

    def _list(self, reuse: Callable[[bytes], bool]) -> Listing:
        listing = list_container(self.session, self.container, reuse, self.cancel)
        for warning in listing.warnings:
            self.log.warning("listing_warning", error=warning)
        self._log_skipped(listing.skipped, ())
        return listing

    def _log_skipped(
        self, listed: Iterable[Skipped], planned: Iterable[tuple[RemoteFile, str]]
    ) -> None:
        for skipped in listed:
            level = self.log.warning if skipped.reason == MTIME_OUT_OF_RANGE else self.log.info
            level("file_skipped", path=display(skipped.path), reason=skipped.reason)
        for remote, reason in planned:
            if reason == "mtime_in_future":
                self.log.warning(
                    "file_skipped",
                    path=display(remote.path),
                    bytes=remote.size,
                    reason=reason,
                    error="its mtime is ahead of the container's clock (the clock or the"
                    " file's time is off): synced once two looks see it unchanged",
                )
                continue
            level = self.log.warning if reason == "too_large" else self.log.info
            level("file_skipped", path=display(remote.path), bytes=remote.size, reason=reason)

    def _plan(self, listing: Listing, clock_offset_s: float, local: CheckedCopies) -> SyncPlan:
        wants = FileFilter(self.container.sync.include, self.container.sync.exclude)
        wanted = [remote for remote in listing.files if wants.wants(remote.path)]
        now_ns = int((time.time() + clock_offset_s) * NS)
        sync = self.container.sync
        plan = plan_sync(
            wanted,
            local.records,
            local,
            None,
            now_ns,
            int(sync.settle_s * NS),
            sync.max_file_size,
            forget=sync.on_local_delete == "forget",
            seen_future=self.session.future_seen,
        )
        if plan.future or self.session.future_seen:
            self.manifest.set_future_files(self.container.name, plan.future)
        self.session.future_seen = plan.future
        self._log_skipped((), plan.skipped)
        return plan

    def _forget(self, plan: SyncPlan) -> None:
        """Record the synced files the user deleted from the library as forgotten."""
        if plan.forget_suspended:
            self.log.warning(
                "forget_suspended",
                files=plan.forget_suspended,
                error="too many library copies missing at once to forget them (is the library"
                " mounted?): fetching them again",
            )
        if not plan.forget:
            return
        self.manifest.record_forgotten(self.container.name, [f.path for f in plan.forget])
        for remote in plan.forget:
            self.log.info("file_forgotten", path=display(remote.path), bytes=remote.size)

    def _check_space(self, fetch: list[RemoteFile]) -> None:
        """Raise DiskFull unless the library's filesystem has room for `fetch`: bytes and
        inodes (each file takes one; many small files can run out of inodes first)."""
        if not fetch:
            return
        needed = sum(f.size for f in fetch)
        free = localfs.free_bytes(self.container_dir)
        if needed + DISK_RESERVE > free:
            raise DiskFull(
                f"{needed} bytes to fetch but only {free} free at "
                f"{display(self.container_dir)} (keeping {DISK_RESERVE} in reserve)"
            )
        inodes = localfs.free_inodes(self.container_dir)
        if inodes is not None and len(fetch) + INODE_RESERVE > inodes:
            raise DiskFull(
                f"{len(fetch)} files to fetch but only {inodes} free inodes at "
                f"{display(self.container_dir)} (keeping {INODE_RESERVE} in reserve)"
            )

    def _hash_remote(self, files: list[RemoteFile]) -> None:
        connection, capabilities = self.session.get()
        paths = [f.path for f in files]
        if capabilities.remote_hashing:
            self.remote_hashes = remote_sha256(connection, self.container.root, paths)
            return
        sftp = connection.open_sftp()
        try:
            for path in paths:
                try:
                    self.remote_hashes[path] = sftp_sha256(sftp, remote_path(self.container, path))
                except OSError:
                    continue  # vanished: its fetch reports it
        finally:
            sftp.close()

    def _adopt(self, candidates: list[RemoteFile]) -> list[RemoteFile]:
        """Record matching local copies without fetching; return those that need a fetch."""
        adopted: list[SyncedFile] = []
        refetch: list[RemoteFile] = []
        for remote in candidates:
            digest = None
            if self.container.sync.verify == "sha256":
                digest = file_sha256(local_path(self.container_dir, remote.path))
                if digest != self.remote_hashes.get(remote.path):
                    refetch.append(remote)
                    continue
            adopted.append(SyncedFile(remote.path, remote.size, remote.mtime_ns, digest))
        if adopted:
            events = [
                records.file_synced(self.container.name, self.run_id, self.container_dir, f, True)
                for f in adopted
            ]
            self.manifest.record_synced(self.container.name, adopted, events)
            for synced in adopted:
                self.log.info("file_adopted", path=display(synced.path), bytes=synced.size)
        return refetch

    def _fetch(self, files: list[RemoteFile]) -> None:
        if not files:
            return
        items = []
        folders: dict[bytes, str | None] = {}  # each folder checked once, not once per file
        for remote in files:
            target = local_path(self.container_dir, remote.path)
            folder = os.path.dirname(target)
            if folder not in folders:
                folders[folder] = self._make_folder(folder)
            problem = folders[folder]
            if problem is not None:
                self._fail_file(remote.path, problem, "transfer")
                continue
            items.append(FetchItem(remote, target))
        strategy = self._strategy()
        self.outcome.details["transfer"] = strategy.name
        worker = threading.Thread(
            target=self._run_strategy,
            args=(strategy, items),
            name=f"fetch-{self.container.name}",
            daemon=True,
        )
        worker.start()
        self._commit_loop(worker)
        if self.outcome.failed_files or self.outcome.error or self.outcome.cancelled:
            removed = localfs.remove_own_temp_files(list(folders))
            if removed:
                self.log.info("temp_files_removed", count=removed)

    def _make_folder(self, folder: bytes) -> str | None:
        """Create a file's folder, first moving into `.versions/` any file that stands
        where one of its folders must be (a remote file replaced by a folder); return why
        it cannot be made, or None."""
        try:
            localfs.ensure_folder(self.container_dir, folder)
            return None
        except OSError:
            pass
        except ValueError as exc:
            return f"cannot create its folder: {exc}"
        try:
            moves = self.versions.make_way_for_folder(folder)
            self.versions.finish(moves)
            self.outcome.versions += len(moves)
            localfs.ensure_folder(self.container_dir, folder)
        except (OSError, ValueError) as exc:
            return f"cannot create its folder: {exc}"
        return None

    def _strategy(self) -> TransferStrategy:
        """One tar stream where the remote has GNU tar (fast for many files), else SFTP."""
        connection, capabilities = self.session.get()
        if capabilities.tar_stream:
            limiter = RateLimiter(self.container.sync.bwlimit_bps)
            return TarStrategy(connection, self.container.root, limiter, self._hashing)
        return self._sftp_strategy()

    @property
    def _hashing(self) -> bool:
        """Hash received bytes only where a check needs them (`verify: sha256`); under
        `verify: size` events and the manifest carry no sha256 ("when known")."""
        return self.container.sync.verify == "sha256"

    def _sftp_strategy(self) -> SftpStrategy:
        connection, _ = self.session.get()
        sync = self.container.sync
        limiter = RateLimiter(sync.bwlimit_bps)
        return SftpStrategy(connection, self.container.root, sync.transfers, limiter, self._hashing)

    def _run_strategy(self, strategy: TransferStrategy, items: list[FetchItem]) -> None:
        """Run the transfer. Files the tar stream did not deliver (a broken or lying remote
        tar) are fetched again over SFTP in the same run. A crash of the strategy fails the
        run instead of vanishing."""
        retry: list[FetchItem] = []
        reasons: list[str] = []

        def tar_outcome(fetched: Fetched) -> None:
            if fetched.error_kind == "transfer" and not self.cancel.is_set():
                retry.append(fetched.item)
                reasons.append(fetched.error or "")
            else:
                self._on_fetched(fetched)

        try:
            first = tar_outcome if strategy.name == "tar" else self._on_fetched
            strategy.fetch(items, first, self.progress.add_bytes, self.cancel, self._on_start)
            for name, reason in strategy.refused if isinstance(strategy, TarStrategy) else ():
                self.log.warning("tar_member_refused", path=display(name), reason=reason)
            if retry:
                self.log.warning("tar_fallback", files=len(retry), error=reasons[0][:300])
                sftp = self._sftp_strategy()
                sftp.fetch(
                    retry, self._on_fetched, self.progress.add_bytes, self.cancel, self._on_start
                )
        except Exception as exc:
            # A reconnect refused mid-run (the container went away) keeps its kind, so the
            # container shows as unreachable rather than as a transfer error.
            kind = "transfer"
            if isinstance(exc, ConnectError | AuthError | HostKeyError):
                kind = exc.kind
            self.outcome.error_kinds.add(kind)
            self.outcome.error = f"transfer failed: {type(exc).__name__}: {exc}"
            self.log.error("transfer_crashed", error=self.outcome.error)

    def _on_start(self, item: FetchItem) -> None:
        self.progress.file_started(display(item.remote.path))

    def _on_fetched(self, fetched: Fetched) -> None:
        """Runs in transfer threads: verify and rename, then hand over for recording. Never
        raises: a defect fails this one file (kind `internal`), not the thread that reads
        the stream (which would leave the stream blocked and the run hung)."""
        try:
            result = self._finish_file(fetched)
        except Exception as exc:
            if fetched.temp is not None:
                _unlink_quietly(fetched.temp)
            error = f"internal error: {type(exc).__name__}: {exc}"[:500]
            result = Fetched(fetched.item, None, error=error, error_kind="internal")
        self._done.put(result)

    def _finish_file(self, fetched: Fetched) -> SyncedFile | Fetched:
        item, remote = fetched.item, fetched.item.remote
        if fetched.temp is None:
            return fetched
        problem, kind = None, None
        if fetched.changed:
            problem, kind = "changed on the remote during transfer", "changed"
        elif fetched.nbytes != remote.size:
            problem, kind = f"got {fetched.nbytes} bytes, expected {remote.size}", "verify"
        elif self.container.sync.verify == "sha256" and fetched.sha256 != self.remote_hashes.get(
            remote.path
        ):
            problem, kind = "sha256 differs from the remote's", "verify"
        if problem is not None:
            os.unlink(fetched.temp)
            return Fetched(item, None, error=problem, error_kind=kind)
        try:
            os.utime(fetched.temp, ns=(remote.mtime_ns, remote.mtime_ns))
            moves = self.versions.make_way(remote.path, fetched.temp)
            if moves:
                with self._moves_lock:
                    self._moves.setdefault(remote.path, []).extend(moves)
            # Over a file only when it holds these very bytes (make_way left it there).
            if os.path.lexists(item.target):
                os.rename(fetched.temp, item.target)
            else:
                localfs.rename_noreplace(fetched.temp, item.target)
        except (OSError, ValueError) as exc:
            _unlink_quietly(fetched.temp)
            return Fetched(
                item, None, error=f"cannot move into place: {exc}", error_kind="transfer"
            )
        return SyncedFile(remote.path, remote.size, remote.mtime_ns, fetched.sha256)

    def _commit_loop(self, worker: threading.Thread) -> None:
        """Record finished files in batches: fsync their folders, then one transaction."""
        batch: list[SyncedFile] = []
        last_commit = time.monotonic()
        while worker.is_alive() or not self._done.empty():
            # Collect what arrived every COLLECT_S instead of waking for each file: a wake
            # per file costs a GIL hand-over (futex calls, a context switch) against the
            # threads that do the work, thousands of times a second on small files.
            done: list[SyncedFile | Fetched] = []
            with contextlib.suppress(queue.Empty):
                while True:
                    done.append(self._done.get_nowait())
            if not done:
                worker.join(COLLECT_S)
            for item in done:
                if isinstance(item, SyncedFile):
                    batch.append(item)
                else:
                    self._fail_file(item.item.remote.path, item.error or "", item.error_kind or "")
            if batch and (
                len(batch) >= COMMIT_EVERY_FILES or time.monotonic() - last_commit > COMMIT_EVERY_S
            ):
                self._commit(batch)
                batch, last_commit = [], time.monotonic()
        if batch:
            self._commit(batch)
        with self._moves_lock:  # moves whose new file never arrived: recorded all the same
            left, self._moves = [m for ms in self._moves.values() for m in ms], {}
        self.versions.finish(left)
        self.outcome.versions += len(left)

    def _commit(self, batch: list[SyncedFile]) -> None:
        """Make the batch's renames durable, then record it (one transaction)."""
        folders = {os.path.dirname(local_path(self.container_dir, f.path)) for f in batch}
        if len(folders) > SYNCFS_OVER_FOLDERS:
            localfs.sync_filesystem(self.container_dir)  # one call instead of many fsyncs
        else:
            for folder in folders:
                localfs.fsync_folder(folder)
        with self._moves_lock:
            moves = [m for f in batch for m in self._moves.pop(f.path, ())]
        events = self.versions.events(moves)  # before the new files' events: catalog order
        events += [
            records.file_synced(self.container.name, self.run_id, self.container_dir, synced)
            for synced in batch
        ]
        events.append(records.batch_synced(self.container.name, self.run_id, batch))
        self.manifest.record_synced(self.container.name, batch, events, moves)
        self.outcome.versions += len(moves)
        for synced in batch:
            self.outcome.files += 1
            self.outcome.bytes += synced.size
            self.progress.file_done()
            self.progress.record_synced(synced.size)
            self.log.info("file_synced", path=display(synced.path), bytes=synced.size)

    def _fail_file(self, path: bytes, error: str, kind: str) -> None:
        self.progress.file_done()
        if kind in ("changed", "vanished"):
            self.log.info("file_deferred", path=display(path), reason=error)
            return
        if kind == "cancelled":
            self.outcome.cancelled = True
            return
        self.outcome.failed_files += 1
        self.outcome.error_kinds.add(kind)
        self.outcome.error = f"{display(path)}: {error}"
        self.log.warning("file_failed", path=display(path), error=error, kind=kind)
        if kind == "disk_full":
            self.cancel.set()


def file_sha256(path: bytes) -> str | None:
    """Return the sha256 of a local file, or None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _unlink_quietly(path: bytes) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def run_container_job(
    job: str,
    run_class: type[ContainerRun],
    container: ContainerConfig,
    media_root: bytes,
    manifest: Manifest,
    session: RemoteSession,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    **extra: Any,
) -> RunOutcome:
    """Run one `job` of `container` with `run_class` and record it; return the outcome
    (never raises for remote or local failures: they are in it, logged and classified)."""

    def body(log: Any, run_id: str) -> RunOutcome:
        run = run_class(
            container,
            media_root,
            manifest,
            session,
            progress or Progress(),
            cancel or threading.Event(),
            log,
            run_id,
            **extra,
        )
        return run.run()

    return run_job(job, container.name, manifest, body)


def sync_container(
    container: ContainerConfig,
    media_root: bytes,
    manifest: Manifest,
    session: RemoteSession,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> RunOutcome:
    """Run one sync of `container` and record it; return the outcome."""
    return run_container_job(
        "sync", SyncRun, container, media_root, manifest, session, progress, cancel
    )
