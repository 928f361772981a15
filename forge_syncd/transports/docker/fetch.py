"""Fetch files out of a container: one GNU `tar` stream through an exec (names on stdin,
the stream read by our strict reader, `transports/shell/tarstream.py`), or, where the
container has no GNU tar, the engine's archive endpoint one file at a time (a tar the engine
makes: read by the same reader). Each file lands in a temporary file beside its target,
hashed as it is written, made durable with one syncfs per batch; a file that changed while
it was read (GNU tar says so, else a stat after the read shows it) is delivered `changed`."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import (
    open_temp,
    start_writeback_later,
    sync_filesystem,
    temp_path_for,
)
from forge_syncd.mtimes import parse_seconds, same_mtime, settled_by, whole_seconds
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import Fetched, FetchItem, OnBytes, OnFetched, OnStart
from forge_syncd.transports.docker import execs
from forge_syncd.transports.docker.engine import Engine, ExecStream
from forge_syncd.transports.receive import (
    Cancelled,
    RateLimiter,
    local_failure_kind,
    local_failure_text,
    write_all,
)
from forge_syncd.transports.shell.tar import parse_stat, stat_script, tar_script
from forge_syncd.transports.shell.tarstream import TarError, TarReader

FLUSH_FILES = 1000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_S = 2.0
CLOCK_MARK = b"\x1e"


@dataclass
class _Got:
    item: FetchItem
    temp: bytes
    fd: int
    read_after_ns: int
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    written: int = 0
    failure: OSError | None = None


@dataclass
class Stream:
    """A readable over an exec's stdout (what TarReader reads), counting, cancellable; the
    tar script's clock record (`\\x1eT<seconds.ns>\\x1e`) is taken off its front."""

    exec: ExecStream
    limiter: RateLimiter
    cancel: threading.Event
    clock_ns: int | None = None
    _pending: bytes = b""
    _head_done: bool = False

    def read(self, size: int) -> bytes:
        if self.cancel.is_set():
            raise Cancelled
        if not self._head_done:
            self._read_clock()
        if not self._pending:
            self._pending = self.exec.read()
            self.limiter.consume(len(self._pending))
        piece, self._pending = self._pending[:size], self._pending[size:]
        return piece

    def _read_clock(self) -> None:
        self._head_done = True
        data = b""
        while len(data) < 64 and (data.count(CLOCK_MARK) < 2):
            chunk = self.exec.read()
            if not chunk:
                break
            data += chunk
        if data.startswith(CLOCK_MARK + b"T") and data.count(CLOCK_MARK) >= 2:
            stamp, _, rest = data[2:].partition(CLOCK_MARK)
            self.clock_ns = parse_seconds(stamp)
            self._pending = rest
        else:
            self._pending = data


class Landing:
    """Where received files go: temporary files, batches made durable, handed over."""

    def __init__(self, on_fetched: OnFetched, on_bytes: OnBytes, on_start: OnStart) -> None:
        self.on_fetched = on_fetched
        self.on_bytes = on_bytes
        self.on_start = on_start
        self.current: dict[bytes, _Got] = {}
        self.ready: list[_Got] = []
        self.durable = False  # the ready files are on disk (`make_durable`)
        self.since = time.monotonic()

    def due(self) -> bool:
        """Whether the ready files make a batch (files, bytes or seconds since the last)."""
        return (
            len(self.ready) >= FLUSH_FILES
            or sum(got.written for got in self.ready) >= FLUSH_BYTES
            or time.monotonic() - self.since >= FLUSH_S
        )

    def start(self, item: FetchItem, read_after_ns: int) -> None:
        temp = temp_path_for(item.target)
        self.current[item.remote.path] = _Got(item, temp, open_temp(temp), read_after_ns)
        self.on_start(item)

    def write(self, name: bytes, chunk: bytes) -> None:
        got = self.current[name]
        write_all(got.fd, chunk)
        got.digest.update(chunk)
        got.written += len(chunk)
        self.on_bytes(len(chunk))

    def end(self, name: bytes, failure: OSError | None) -> None:
        got = self.current.pop(name)
        if failure is None:
            start_writeback_later(got.fd, got.written)
        os.close(got.fd)
        got.failure = failure
        self.ready.append(got)

    def drop_current(self) -> None:
        """The member being written when the stream broke: never handed over."""
        for got in self.current.values():
            os.close(got.fd)
            _unlink(got.temp)
        self.current.clear()

    def make_durable(self) -> None:
        """Flush the ready files to disk (one syncfs), once (`hand_over` does it if not)."""
        good = [got for got in self.ready if got.failure is None]
        if good and not self.durable:
            sync_filesystem(os.path.dirname(good[0].temp))
        self.durable = True

    def hand_over(self, changed: set[bytes], unconfirmed: str | None) -> None:
        """Make the ready files durable (one syncfs) and hand each over: `changed` ones as
        changed; all as transfer failures when `unconfirmed` says why they cannot be
        checked."""
        self.make_durable()
        batch, self.ready, self.since, self.durable = self.ready, [], time.monotonic(), False
        for got in batch:
            item = got.item
            if got.failure is not None or unconfirmed is not None:
                _unlink(got.temp)
                if got.failure is not None:
                    error, kind = local_failure_text(got.failure), local_failure_kind(got.failure)
                else:
                    error, kind = unconfirmed or "", FileKind.TRANSFER
                self.on_fetched(Fetched(item, None, error=error, error_kind=kind))
                continue
            racy = not settled_by(item.remote.mtime_ns, got.read_after_ns)
            self.on_fetched(
                Fetched(
                    item,
                    got.temp,
                    got.written,
                    got.digest.hexdigest(),
                    changed=item.remote.path in changed or got.written != item.remote.size,
                    racy=racy,
                )
            )


def tar_fetch(
    engine: Engine,
    root: str,
    items: Sequence[FetchItem],
    landing: Landing,
    limiter: RateLimiter,
    cancel: threading.Event,
    earliest_now: int,
) -> tuple[set[bytes], str, list[tuple[bytes, str]]]:
    """Stream `items` through one GNU tar in the container; return the names handed over,
    the error that stopped the stream ("" if none) and the members refused."""
    by_name = {item.remote.path: item for item in items}
    names = b"".join(name + b"\0" for name in by_name)
    handed: set[bytes] = set()
    try:
        running = execs.start(engine, tar_script(root), names)
    except RemoteError as exc:
        return handed, f"cannot start tar in the container: {exc}", []
    stream = Stream(running, limiter, cancel)
    reader = TarReader(
        stream,
        {name: item.remote.size for name, item in by_name.items()},
        {name: whole_seconds(item.remote.mtime_ns) for name, item in by_name.items()},
    )

    def start(name: bytes) -> None:
        clock = stream.clock_ns if stream.clock_ns is not None else earliest_now
        landing.start(by_name[name], clock)

    def end(name: bytes, failure: OSError | None) -> None:
        landing.end(name, failure)
        if landing.due():
            flush(confirmed=False)

    def flush(confirmed: bool) -> None:
        ready = [got.item.remote.path for got in landing.ready]
        changed: set[bytes] = set()
        unconfirmed: str | None = None
        if ready and not confirmed:
            changed, unconfirmed = changed_since(engine, root, [by_name[n] for n in ready])
        landing.hand_over(changed, unconfirmed)
        handed.update(ready)

    error = ""
    finished = False
    try:
        reader.members(landing.write, start, end)
        while running.read():  # what follows the end blocks
            pass
        finished = True
    except (TarError, Cancelled, OSError, RemoteError) as exc:
        error = "cancelled" if isinstance(exc, Cancelled) else f"tar stream failed: {exc}"
    finally:
        running.close(kill=not finished)
        landing.drop_current()
    clean = finished and running.exit_code() == 0 and not running.stderr.strip()
    flush(confirmed=clean and not reader.refused)
    return handed, _stream_error(error, running, reader.refused, cancel), list(reader.refused)


def _stream_error(
    error: str, running: ExecStream, refused: list[tuple[bytes, str]], cancel: threading.Event
) -> str:
    """What stopped a tar stream, with what tar said; else the first refused member."""
    if error and not cancel.is_set():
        said = bytes(running.stderr[-300:]).decode(errors="replace").strip()
        error += f" ({said})" if said else ""
    for name, reason in refused:
        error = error or f"refused member {name!r}: {reason}"
    return error


def changed_since(
    engine: Engine, root: str, items: Sequence[FetchItem]
) -> tuple[set[bytes], str | None]:
    """Return the names whose size or mtime in the container now differ from the listing,
    and why the check failed (None if it did not)."""
    names = [item.remote.path for item in items]
    try:
        result = execs.run(engine, stat_script(root), b"".join(b"./" + n + b"\0" for n in names))
    except RemoteError as exc:
        return set(names), f"could not confirm it is unchanged: {exc}"
    if result.status not in (0, 123):  # 123: xargs ran find on a name that is gone
        return set(names), f"could not confirm it is unchanged (exit {result.status})"
    now = parse_stat(result.stdout)
    changed = set()
    for item in items:
        seen = now.get(item.remote.path)
        listed = item.remote
        if seen is None or seen[0] != listed.size or not same_mtime(seen[1], listed.mtime_ns):
            changed.add(listed.path)
    return changed, None


def _unlink(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
