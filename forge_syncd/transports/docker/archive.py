"""The engine's archive endpoint (`GET /containers/C/archive?path=P`: a tar the engine makes
of P, read by our strict reader; `HEAD`: its size and mtime).

A whole folder at once (`fetch_tree`), the first sync's fast path: the engine's tar is read
straight off its socket, ~4x faster than a tar through an exec stream (README, Transports:
Docker). Only the planned members are kept, each checked as a tar stream's are (name, type,
listed size and mtime), and never more bytes read than the listing says the folder holds.

One file at a time where the container lacks GNU tar (fetch), python3 or sha256sum
(hashes), or stat and sha256sum (deletes, which then run `rm` only after the checks, as SFTP
deletes do: see `ssh/delete.py` for what whole-second checks cannot see)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import queue
import socket
import threading
from collections.abc import Mapping, Sequence

from forge_syncd.errorkinds import FileKind
from forge_syncd.mtimes import parse_seconds, whole_seconds
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import Deleted, Fetched, FetchItem, RemoteFile
from forge_syncd.transports.docker import execs
from forge_syncd.transports.docker.engine import Engine, PathStat
from forge_syncd.transports.docker.fetch import Landing
from forge_syncd.transports.receive import Cancelled, RateLimiter, remote_file
from forge_syncd.transports.shell.tarstream import TarError, TarReader

ARCHIVE_SLACK = 64 * 1024 * 1024  # what a folder's tar may hold past its listed bytes
HEADER_ALLOWANCE = 3 * 512  # per listed entry: its header, a PAX header and padding
CLOCK_SCRIPT = "date +%s.%N"
PIECE = 256 * 1024
PREFETCH = 256  # pieces read ahead, at most (64 MiB)


class _Counted:
    """The archive response as TarReader reads it: cancellable, rate-limited, and cut at
    `budget` bytes (None: no bound)."""

    def __init__(
        self,
        response: object,
        limiter: RateLimiter,
        cancel: threading.Event,
        budget: int | None = None,
    ):
        self.response = response
        self.limiter = limiter
        self.cancel = cancel
        self.budget = budget

    def read(self, size: int) -> bytes:
        if self.cancel.is_set():
            raise Cancelled
        data: bytes = self.response.read(size)  # type: ignore[attr-defined]
        self.limiter.consume(len(data))
        if self.budget is not None:
            self.budget -= len(data)
            if self.budget < 0:
                raise TarError("the folder's archive is larger than its listing")
        return data


class _Prefetched:
    """An archive response read ahead by a thread of its own (at most PREFETCH pieces of
    PIECE bytes): the engine's writes never wait while this process writes and hashes (a
    unix socket buffers ~200 KB). `read` as HTTPResponse.read; OSError when it broke."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.pieces: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH)
        self.stopped = threading.Event()
        self.current, self.offset, self.ended = b"", 0, False  # offset: handed out of current
        self.thread = threading.Thread(target=self._read_ahead, name="archive-read", daemon=True)
        self.thread.start()

    def _read_ahead(self) -> None:
        while not self.stopped.is_set():
            try:
                # Whole pieces (read1 gave one socket read's ~5 KB: 55,000 for 300 MB).
                piece: bytes | BaseException = self.response.read(PIECE)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                piece = OSError(f"the archive stream broke: {exc}")
            while not self.stopped.is_set():
                try:
                    self.pieces.put(piece, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not isinstance(piece, bytes) or not piece:
                return

    def read(self, size: int) -> bytes:
        while self.offset >= len(self.current) and not self.ended:
            piece = self.pieces.get()
            if isinstance(piece, BaseException):
                self.ended = True
                raise piece
            self.current, self.offset, self.ended = piece, 0, not piece
        start, self.offset = self.offset, min(len(self.current), self.offset + size)
        whole = start == 0 and self.offset == len(self.current)
        return self.current if whole else self.current[start : self.offset]

    def stop(self) -> None:
        """End the reading thread (waking it if it waits for the engine) and close."""
        self.stopped.set()
        sock = getattr(getattr(getattr(self.response, "fp", None), "raw", None), "_sock", None)
        if self.thread.is_alive() and isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.thread.join()
        self.response.close()


def container_now(engine: Engine) -> int | None:
    """The container's clock (ns), read by an exec; None where it cannot be read."""
    try:
        result = execs.run(engine, CLOCK_SCRIPT, max_output=64)
    except RemoteError:
        return None
    return parse_seconds(result.stdout.strip()) if result.status == 0 else None


def stream_tree(
    engine: Engine,
    base: bytes,
    folder: bytes,
    items: Sequence[FetchItem],
    landing: Landing,
    limiter: RateLimiter,
    cancel: threading.Event,
    read_after_ns: int,
    listed_bytes: int,
) -> str:
    """Receive `items` (all under `folder`, relative to the container's root `base`; b"":
    the root) through one archive request for the folder into `landing` (ready, not handed
    over); return the error that stopped the stream ("" if none). Members not planned, or
    refused by the reader, are skipped, never written. `read_after_ns`: the container's
    clock read before the request (a file modified since is racy). The stream is cut past
    `listed_bytes` (plus headers and ARCHIVE_SLACK): a folder that grew since its listing
    is not read to its end. The engine holds the container while it streams (no exec
    starts meanwhile): the caller checks the files again (`changed_since`) afterwards, as
    the engine does not say that a file changed while it was read."""
    path = base + b"/" + folder if folder else base
    prefix = os.path.basename(path) + b"/"
    cut = len(folder) + 1 if folder else 0
    by_member = {prefix + item.remote.path[cut:]: item for item in items}
    try:
        _seen, response = engine.archive(path)
    except FileNotFoundError:
        return "the folder is gone"
    except RemoteError as exc:
        return f"archive request failed: {exc}"
    budget = listed_bytes + ARCHIVE_SLACK + HEADER_ALLOWANCE * (len(items) + 1024)
    source = _Prefetched(response)
    reader = TarReader(
        _Counted(source, limiter, cancel, budget),
        {name: item.remote.size for name, item in by_member.items()},
        {name: whole_seconds(item.remote.mtime_ns) for name, item in by_member.items()},
    )
    try:
        reader.members(
            lambda name, chunk: landing.write(by_member[name].remote.path, chunk),
            lambda name: landing.start(by_member[name], read_after_ns),
            lambda name, failure: landing.end(by_member[name].remote.path, failure),
        )
    except (TarError, Cancelled, OSError, RemoteError) as exc:
        return "cancelled" if isinstance(exc, Cancelled) else f"archive stream failed: {exc}"
    finally:
        source.stop()
        landing.drop_current()
    return ""


def _regular(seen: PathStat) -> bool:
    """Go's os.FileMode: no type bit set (bits 20 and up) is a regular file."""
    return seen.mode >> 20 == 0


def fetch_one(
    engine: Engine,
    root: str,
    item: FetchItem,
    landing: Landing,
    limiter: RateLimiter,
    cancel: threading.Event,
    earliest_now: int,
) -> str:
    """Fetch one file through the archive endpoint into `landing` (ready, not handed over);
    return an error text ("" when it arrived whole)."""
    path = remote_file(root, item.remote.path)
    if not _utf8(path):
        return _cat_one(engine, path, item, landing, limiter, cancel, earliest_now)
    try:
        before, response = engine.archive(path)
    except FileNotFoundError:
        return "vanished"
    name = os.path.basename(item.remote.path)
    reader = TarReader(
        _Counted(response, limiter, cancel),
        {name: item.remote.size},
        {name: whole_seconds(item.remote.mtime_ns)},
    )
    try:
        listed = item.remote.path  # the member is named by its basename
        reader.members(
            lambda _name, chunk: landing.write(listed, chunk),
            lambda _name: landing.start(item, earliest_now),
            lambda _name, failure: landing.end(listed, failure),
        )
    except (TarError, OSError) as exc:
        landing.drop_current()
        return f"archive stream failed: {exc}"
    finally:
        response.close()
    if reader.refused:
        return f"refused: {reader.refused[0][1]}"
    if not reader.received:
        return "not in the archive"
    if not (_regular(before) and _same(before, item.remote)):
        return "changed"
    return ""


def _utf8(path: bytes) -> bool:
    """The engine's archives leave out a name that is not UTF-8 (Go's tar writer)."""
    try:
        path.decode()
    except UnicodeDecodeError:
        return False
    return True


def _cat_one(
    engine: Engine,
    path: bytes,
    item: FetchItem,
    landing: Landing,
    limiter: RateLimiter,
    cancel: threading.Event,
    earliest_now: int,
) -> str:
    """Fetch a file whose name the archive endpoint cannot carry: `cat` in the container,
    the name on stdin, at most one byte past the listed size read; its stat (HEAD) before
    must show the listed regular file."""
    before = _stat(engine, path)
    if before is None:
        return "vanished"
    if not (_regular(before) and _same(before, item.remote)):
        return "changed"
    name = item.remote.path
    landing.start(item, earliest_now)
    stream = execs.start(engine, "exec xargs -0 -r cat --", path + b"\0")
    finished = False
    try:
        left = item.remote.size + 1
        while left > 0 and (chunk := stream.read()):
            if cancel.is_set():
                raise Cancelled
            chunk = chunk[:left]
            left -= len(chunk)
            limiter.consume(len(chunk))
            landing.write(name, chunk)
        finished = left > 0
    except (OSError, RemoteError) as exc:
        landing.drop_current()
        return f"read failed: {exc}"
    except Cancelled:
        landing.drop_current()
        raise
    finally:
        stream.close(kill=not finished)
    landing.end(name, None)
    return ""


def _same(seen: PathStat, remote: RemoteFile) -> bool:
    return (seen.size, seen.mtime_s) == (remote.size, whole_seconds(remote.mtime_ns))


def fetch_all(
    engine: Engine,
    root: str,
    items: Sequence[FetchItem],
    landing: Landing,
    limiter: RateLimiter,
    cancel: threading.Event,
    earliest_now: int,
) -> None:
    """Fetch each item through the archive endpoint, each checked after its read (HEAD)."""
    for item in items:
        if cancel.is_set():
            landing.on_fetched(
                Fetched(item, None, error="cancelled", error_kind=FileKind.CANCELLED)
            )
            continue
        try:
            error = fetch_one(engine, root, item, landing, limiter, cancel, earliest_now)
        except Cancelled:
            landing.drop_current()
            error = "cancelled"
        changed: set[bytes] = set()
        if error in ("", "changed"):
            after = _stat(engine, remote_file(root, item.remote.path))
            if error == "changed" or after is None or not _same(after, item.remote):
                changed.add(item.remote.path)
            landing.hand_over(changed, None)
            continue
        kind = FileKind.VANISHED if error == "vanished" else FileKind.TRANSFER
        kind = FileKind.CANCELLED if error == "cancelled" else kind
        landing.on_fetched(Fetched(item, None, error=error, error_kind=kind))


def _stat(engine: Engine, path: bytes) -> PathStat | None:
    try:
        return engine.archive(path, head=True)[0]
    except FileNotFoundError:
        return None


def sha256_of(engine: Engine, path: bytes, cancel: threading.Event | None = None) -> str | None:
    """The sha256 of a file read through the archive endpoint; None if it is not there or
    not a regular file."""
    if not _utf8(path):
        return _cat_sha256(engine, path)
    try:
        seen, response = engine.archive(path)
    except FileNotFoundError:
        return None
    digest = hashlib.sha256()
    found: list[bool] = []
    reader = TarReader(
        _Counted(response, RateLimiter(None), cancel or threading.Event()),
        {os.path.basename(path): seen.size},
    )
    try:
        reader.members(
            lambda _n, chunk: digest.update(chunk),
            lambda _n: None,
            lambda _n, _f: found.append(True),
        )
    except (TarError, OSError) as exc:
        raise RemoteError(f"archive stream failed: {exc}") from exc
    except Cancelled as exc:
        raise RemoteError("cancelled") from exc
    finally:
        response.close()
    return digest.hexdigest() if found and _regular(seen) else None


def _cat_sha256(engine: Engine, path: bytes) -> str | None:
    """The sha256 of a file whose name the archive endpoint cannot carry (`cat`), None if
    it is not a regular file there."""
    seen = _stat(engine, path)
    if seen is None or not _regular(seen):
        return None
    digest = hashlib.sha256()
    stream = execs.start(engine, "exec xargs -0 -r cat --", path + b"\0")
    try:
        while chunk := stream.read():
            digest.update(chunk)
    except OSError as exc:
        raise RemoteError(f"read failed: {exc}") from exc
    finally:
        stream.close(kill=False)
    return digest.hexdigest() if stream.exit_code() == 0 else None


def delete_checked(
    engine: Engine, root: str, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]
) -> Deleted:
    """Delete each file after its stat shows it unchanged, its bytes (read through the
    archive endpoint) hash to `sha256[path]` and a second stat still shows it unchanged."""
    deleted = Deleted()
    for remote in files:
        if remote.path not in sha256:
            continue
        path = remote_file(root, remote.path)
        before = _stat(engine, path)
        if before is None or not (_regular(before) and _same(before, remote)):
            continue
        digest = sha256_of(engine, path)
        if digest is None:
            continue
        if digest != sha256[remote.path]:
            deleted.differs.add(remote.path)
            continue
        after = _stat(engine, path)
        if after is None or not _same(after, remote):
            continue
        result = execs.run(engine, "exec xargs -0 -r rm -f --", path + b"\0")
        if result.status == 0 and _stat(engine, path) is None:
            deleted.gone.add(remote.path)
    return deleted
