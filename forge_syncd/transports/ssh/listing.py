"""List a container's files: one GNU `find` round trip, or an SFTP walk where there is none."""

from __future__ import annotations

import stat
import threading
from collections import deque
from collections.abc import Callable

import paramiko
from paramiko.sftp_attr import SFTPAttributes

from forge_syncd.mtimes import NS
from forge_syncd.paths import unsafe_reason
from forge_syncd.remote.errors import ListingError
from forge_syncd.remote.types import MAX_SIZE, Limits, Listing, ListingMethod, RemoteFile, Skipped
from forge_syncd.transports.shell.listing import (
    _drop_repeats,
    find_script,
    listing_of_find,
    too_many,
)
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult
from forge_syncd.transports.ssh.connection import Connection
from forge_syncd.transports.ssh.paramiko_patch import (
    CMD_CLOSE,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPENDIR,
    CMD_READDIR,
    attributes_from_message,
    raw_request,
)

MAX_DEPTH = 64


def list_with_find(
    connection: Connection,
    root: str,
    folders: tuple[str, ...],
    reuse: Callable[[bytes], bool] | None = None,
    limits: Limits = Limits(),
) -> Listing:
    """Return the listing from one remote `find`. Raise ListingError if it fails or goes
    past `limits`.

    `reuse`, given the raw output, may answer True to skip parsing it (the caller has seen
    these very bytes before): the Listing then comes back `reused` and empty.
    """
    try:
        result = connection.run_script(find_script(root, folders), max_output=limits.size)
    except OutputTooLarge as exc:
        raise ListingError(
            f"the listing is larger than {limits.size} bytes (max_listing_size)"
        ) from exc
    return listing_from_find(result, root, reuse, limits)


def listing_from_find(
    result: ScriptResult,
    root: str,
    reuse: Callable[[bytes], bool] | None = None,
    limits: Limits = Limits(),
) -> Listing:
    """Given the result of `find_script` (run on its own, or by the probe), return the
    Listing; see `list_with_find`. Raise ListingError if the command failed or its output
    is past `limits.size`."""
    return listing_of_find(
        result.stdout, result.stderr, result.status, root, "remote ", reuse, limits
    )


def list_with_sftp(
    sftp: paramiko.SFTPClient,
    root: str,
    folders: tuple[str, ...],
    limits: Limits = Limits(),
    cancel: threading.Event | None = None,
) -> Listing:
    """Return the listing from an SFTP walk (lstat only: links are never followed). Raise
    ListingError past `limits` (entries of every kind count, so a server that answers
    READDIR for ever is stopped too) or when `cancel` is set."""
    listing = Listing(method=ListingMethod.SFTP)
    budget = Budget(limits, cancel or threading.Event())
    base = root.rstrip("/").encode() or b"/"
    try:
        root_attr = sftp.lstat(base)
    except OSError as exc:
        raise ListingError(f"root {root} does not exist on the remote: {exc}") from exc
    if not stat.S_ISDIR(root_attr.st_mode or 0):
        raise ListingError(f"root {root} is not a directory")
    starts = [folder.encode() for folder in folders] if folders else [b""]
    for start in starts:
        _walk(sftp, base, start, listing, budget)
    _drop_repeats(listing)
    return listing


class Budget:
    """What an SFTP walk may still read: entries, and bytes of names."""

    def __init__(self, limits: Limits, cancel: threading.Event) -> None:
        self.limits = limits
        self.cancel = cancel
        self.entries = 0
        self.size = 0

    def spend(self, name: bytes) -> None:
        """Count one entry; raise ListingError when over the limits or cancelled."""
        self.entries += 1
        self.size += len(name) + 64
        if self.entries > self.limits.files:
            raise ListingError(too_many(self.limits))
        if self.size > self.limits.size:
            raise ListingError(f"the listing is larger than {self.limits.size} bytes")
        if self.entries % 1000 == 0 and self.cancel.is_set():
            raise ListingError("cancelled")


def _walk(
    sftp: paramiko.SFTPClient, base: bytes, start: bytes, listing: Listing, budget: Budget
) -> None:
    if start:
        try:
            attr = sftp.lstat(base + b"/" + start)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(attr.st_mode or 0):
            _add(listing, start, attr)
            return
    pending: deque[tuple[bytes, int]] = deque([(start, 0)])
    while pending:
        folder, depth = pending.popleft()
        if budget.cancel.is_set():
            raise ListingError("cancelled")
        for name, attr in _readdir(sftp, base + b"/" + folder if folder else base, budget):
            relative = folder + b"/" + name if folder else name
            if b"/" in name:  # a lying SFTP server: never let it pick the folder
                listing.skipped.append(Skipped(relative, "name contains '/'"))
                continue
            if stat.S_ISDIR(attr.st_mode or 0) and depth < MAX_DEPTH:
                pending.append((relative, depth + 1))
            elif not stat.S_ISDIR(attr.st_mode or 0):
                _add(listing, relative, attr)


def _add(listing: Listing, path: bytes, attr: SFTPAttributes) -> None:
    reason = unsafe_reason(path)
    mode = attr.st_mode or 0
    regular = stat.S_ISREG(mode)
    if reason is None and not regular:
        reason = "symlink" if stat.S_ISLNK(mode) else "not a regular file"
    # SFTP gives whole seconds (an unsigned 32-bit count: 1970 to 2106).
    size, mtime_ns = attr.st_size or 0, int(attr.st_mtime or 0) * NS
    if reason is None and not 0 <= size <= MAX_SIZE:
        reason = "too_large"
    if reason is not None:
        listing.skipped.append(Skipped(path, reason, regular, max(0, size), mtime_ns))
        return
    listing.files.append(RemoteFile(path, size, mtime_ns))


def _readdir(
    sftp: paramiko.SFTPClient, path: bytes, budget: Budget
) -> list[tuple[bytes, SFTPAttributes]]:
    """Return (name, lstat attributes) of a remote folder, names as raw bytes.

    paramiko's listdir_attr decodes names as strict UTF-8 and fails on any other bytes;
    container file names are arbitrary bytes, so this reads the SFTP NAME replies itself.
    """
    try:
        kind, msg = raw_request(sftp, CMD_OPENDIR, path)
    except OSError:
        return []  # unreadable folder: skip it, as find would
    if kind != CMD_HANDLE:
        raise ListingError("SFTP server did not return a folder handle")
    handle = msg.get_binary()
    entries: list[tuple[bytes, SFTPAttributes]] = []
    try:
        while True:
            try:
                kind, msg = raw_request(sftp, CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise ListingError("SFTP server sent a malformed folder listing")
            for _ in range(msg.get_int()):
                name = msg.get_string()
                budget.spend(name)
                longname = msg.get_string()
                attr = attributes_from_message(msg, name, longname)
                if name not in (b".", b".."):
                    entries.append((name, attr))
    finally:
        raw_request(sftp, CMD_CLOSE, handle)
    return entries
