"""The fetching part of a sync run: adopting local copies that match, making the files'
folders, and the transfer thread that fetches through the container's `Transport` while
the run's `Committer` lands what arrives."""

from __future__ import annotations

import os
import threading
from typing import Any

from forge_syncd.errorkinds import ErrorKind, FileKind
from forge_syncd.jobs.outcome import SyncReport
from forge_syncd.jobs.record import JobContext, RunOutcome
from forge_syncd.library import events as records
from forge_syncd.library import localfs
from forge_syncd.library.dedupe import Sharer
from forge_syncd.library.hashing import file_sha256
from forge_syncd.library.manifest import SyncedFile
from forge_syncd.library.share import NotTheBytes
from forge_syncd.library.versions import Versions
from forge_syncd.mtimes import settled_by
from forge_syncd.paths import display, local_path
from forge_syncd.remote.errors import AuthError, ConnectError, HostKeyError
from forge_syncd.remote.types import FetchCallbacks, Fetched, FetchItem, RemoteFile
from forge_syncd.sync.commit import Committer
from forge_syncd.sync.lanes import fetch_over
from forge_syncd.sync.shortcut import LocalSource


class Fetcher:
    """Adopts and fetches one sync run's files into the library."""

    def __init__(
        self,
        ctx: JobContext,
        log: Any,
        run_id: str,
        outcome: RunOutcome,
        versions: Versions,
        committer: Committer,
        remote_hashes: dict[bytes, str],
    ) -> None:
        """`remote_hashes`: the remote files' sha256 (`verify: sha256`), else empty."""
        self.ctx = ctx
        self.container = ctx.container
        self.container_dir = ctx.container_dir
        self.remote = ctx.remote
        self.log = log
        self.run_id = run_id
        self.outcome = outcome
        self.versions = versions
        self.committer = committer
        self.remote_hashes = remote_hashes
        self.sharer = committer.sharer or Sharer(ctx.manifest, ctx.media_root, log)
        # Files the remote-hash shortcut makes from library copies (`shortcut.py`).
        self.local_sources: dict[bytes, LocalSource] = {}

    def adopt(self, candidates: list[RemoteFile]) -> list[RemoteFile]:
        """Record matching local copies without fetching; return those that need a fetch."""
        adopted: list[SyncedFile] = []
        refetch: list[RemoteFile] = []
        earliest_now = self.remote.probe().clock.surely_passed_ns()
        for remote in candidates:
            digest = file_sha256(local_path(self.container_dir, remote.path))
            if digest is None or (
                self.container.sync.verify == "sha256"
                and digest != self.remote_hashes.get(remote.path)
            ):
                refetch.append(remote)
                continue
            racy = not settled_by(remote.mtime_ns, earliest_now)
            adopted.append(SyncedFile(remote.path, remote.size, remote.mtime_ns, digest, racy))
        if adopted:
            name = self.container.name
            events = [
                records.file_synced(name, self.run_id, self.container_dir, f, True) for f in adopted
            ]
            self.ctx.manifest.files.record_synced(name, adopted, events)
            self.committer.landed.update(synced.path for synced in adopted if not synced.racy)
            for synced in adopted:
                self.log.info("file_adopted", path=display(synced.path), bytes=synced.size)
        return refetch

    def fetch(self, files: list[RemoteFile], report: SyncReport) -> None:
        """Fetch `files` (the transfer thread) and land them (this thread)."""
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
                self.committer.fail_file(remote.path, problem, FileKind.TRANSFER)
                continue
            items.append(FetchItem(remote, target))
        worker = threading.Thread(
            target=self._transfer,
            args=(items, report),
            name=f"fetch-{self.container.name}",
            daemon=True,
        )
        worker.start()
        self.committer.run(worker)
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

    def _made_locally(self, items: list[FetchItem], calls: FetchCallbacks) -> list[FetchItem]:
        """Make the items the remote-hash shortcut found in the library (`local_sources`)
        from their library copies, handing each over as fetched; return the others (and
        any whose copy failed) for the transfer."""
        rest = []
        for item in items:
            found = self.local_sources.get(item.remote.path)
            if self.ctx.cancel.is_set():  # the transfer reports the cancel for the rest
                found = None
            made = None if found is None else self._local_copy(item, found)
            if made is None:
                rest.append(item)
                continue
            temp, how = made
            self.committer.prepared[temp] = how
            calls.on_bytes(item.remote.size)
            calls.on_fetched(Fetched(item, temp, item.remote.size, found.sha256 if found else None))
        return rest

    def _local_copy(self, item: FetchItem, found: LocalSource) -> tuple[bytes, str] | None:
        """Make `item`'s temp file from the first library copy that still has its bytes;
        return it and how (reflink, hardlink, copy), or None."""
        for source in found.sources:
            try:
                temp, how = self.sharer.local_copy(source, item.target, found.sha256)
            except (OSError, NotTheBytes):
                continue
            self.log.info(
                "file_made_locally",
                path=display(item.remote.path),
                bytes=item.remote.size,
                source=display(source),
                how=how,
            )
            return temp, how
        return None

    def _transfer(self, items: list[FetchItem], report: SyncReport) -> None:
        """The transfer thread: fetch through the Transport (which picks tar or SFTP and falls
        back from a broken tar stream), spread over the lanes it offers (`lanes.py`). A crash
        of the transfer fails the run instead of vanishing."""
        progress = self.ctx.progress
        try:
            calls = FetchCallbacks(
                self.committer.on_fetched,
                progress.add_bytes,
                lambda item: progress.file_started(display(item.remote.path)),
                lambda item: progress.file_done(item.remote.path),
            )
            items = self._made_locally(items, calls)
            lanes = self.remote.fetch_lanes(len(items), sum(i.remote.size for i in items))
            spread = fetch_over(self.remote, lanes.extra, items, calls, self.ctx.cancel)
            fetched = spread.report
            if lanes.extra:
                asked = 1 + len(lanes.extra)
                self.log.info("fetch_connections", connections=spread.lanes, asked=asked)
            for refusal in spread.refused[:1]:  # fewer connections: no error, said once
                self.log.info("connection_refused", connections=spread.lanes, error=refusal[:300])
            report.transfer = fetched.transfer
            self.log.debug("fetch_done", transfer=fetched.transfer, files=len(items))
            for name, reason in fetched.refused:
                self.log.warning("tar_member_refused", path=display(name), reason=reason)
            if fetched.fallback:
                self.log.warning(
                    "tar_fallback", files=fetched.fallback, error=fetched.fallback_reason[:300]
                )
        except Exception as exc:
            # A reconnect refused mid-run (the container went away) keeps its kind, so the
            # container shows as unreachable rather than as a transfer error.
            kind = ErrorKind.TRANSFER
            if isinstance(exc, ConnectError | AuthError | HostKeyError):
                kind = exc.kind
            self.outcome.error_kinds.add(kind)
            self.outcome.error = f"transfer failed: {type(exc).__name__}: {exc}"
            self.log.error("transfer_crashed", error=self.outcome.error)
