"""The fast transfer strategy: all changed files in one `tar` stream over one exec channel.

Names go to the remote `tar` on stdin, NUL-separated (never on a command line). The stream
is parsed by our own strict reader (`transports/shell/tarstream.py`) straight into
temporary files beside their targets. Files are made durable together with one syncfs(2)
instead of an fsync each, and one remote `stat` of the received names afterwards catches
files that changed while tar read them. Used when the remote has GNU tar, xargs and stat;
otherwise SFTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import open_temp, sync_filesystem, temp_path_for
from forge_syncd.mtimes import same_mtime, settled_by, whole_seconds
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import (
    EarliestNow,
    Fetched,
    FetchItem,
    OnBytes,
    OnFetched,
    OnStart,
    TransferMethod,
)
from forge_syncd.transports.receive import (
    Cancelled,
    RateLimiter,
    local_failure_kind,
    local_failure_text,
    write_all,
)
from forge_syncd.transports.shell.tar import parse_stat, stat_script, tar_script
from forge_syncd.transports.shell.tarstream import TarError, TarReader
from forge_syncd.transports.ssh.channel_stream import ChannelStream, ListedField
from forge_syncd.transports.ssh.connection import (
    Connection,
    sh_command,
)
from forge_syncd.transports.ssh.shells import close_quietly

FLUSH_FILES = 1000
FLUSH_BYTES = 256 * 1024 * 1024
FLUSH_S = 2.0
BATCHES_AHEAD = 2
MAX_STDERR = 1024 * 1024


@dataclass(slots=True)
class Received:
    item: FetchItem
    temp: bytes
    fd: int
    digest: hashlib._Hash
    read_after_ns: int  # the container's clock before tar read it
    written: int = 0
    failure: OSError | None = None  # the local write error that stopped it
    changed: bool = False  # its tar header says it is not the file the listing saw


class TarStrategy:
    """Fetches through one remote tar stream. The shell that stream runs in may be started
    ahead of time (`prepare`); it belongs to this strategy alone: `fetch` uses it, `discard`
    closes it if no fetch did."""

    name = TransferMethod.TAR

    def __init__(
        self,
        connection: Connection,
        root: str,
        limiter: RateLimiter | None = None,
        earliest_now: EarliestNow | None = None,
    ) -> None:
        """Every file's sha256 is computed while it is written (the library copy's, kept in
        the manifest; ~1 s of CPU per GB). `earliest_now`: a time the container's clock has
        surely passed, for a stream that did not say its clock (default: ours less
        CLOCK_SLACK_NS)."""
        self.connection = connection
        self.root = root
        self.limiter = limiter or RateLimiter(None)
        self.earliest_now = earliest_now or ContainerClock().surely_passed_ns
        self.refused: list[tuple[bytes, str]] = []  # the last stream's refused members
        self._shell = object()  # the key of the shell `prepare` started, known only here

    def prepare(self) -> None:
        """Start the remote tar's shell now (while the caller lists and plans), waiting for
        the next `fetch`; one started before and still waiting is kept."""
        self.connection.shells.prepare(tar_script(self.root), key=self._shell, replace=False)

    def discard(self) -> None:
        """Close the shell `prepare` started, unless a `fetch` used it (it runs nothing)."""
        self.connection.shells.discard(self._shell)

    def fetch(
        self,
        items: Sequence[FetchItem],
        on_fetched: OnFetched,
        on_bytes: OnBytes,
        cancel: threading.Event,
        on_start: OnStart | None = None,
        on_received: OnStart | None = None,
    ) -> None:
        """Stream `items` through one remote tar; each is handed to `on_fetched` in the
        batch it was made durable and checked with; `on_received(item)` as soon as it has
        arrived whole (progress moves a file at a time, not a batch at a time)."""
        by_name = {item.remote.path: item for item in items}
        done: set[bytes] = set()
        # Bounded: when the disk (syncfs) or the remote check falls behind the stream, the
        # stream waits instead of holding ever more finished files in memory.
        batches: queue.Queue[list[Received] | None] = queue.Queue(BATCHES_AHEAD)
        tar_clean = threading.Event()
        abort = threading.Event()
        failures: list[str] = []

        def finish() -> None:
            """Hand over batches off the reading thread, so syncfs and the remote check
            overlap the stream. Batches waiting together are made durable and checked
            together; those still waiting when tar finished cleanly need no check."""
            closing = False
            while not closing:
                batch = batches.get()
                if batch is None:
                    return
                while True:
                    try:
                        more = batches.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        closing = True
                        break
                    batch += more
                if abort.is_set():
                    _discard(batch)  # the stream is stopping: fetched again later
                    continue
                try:
                    self._hand_over(batch, tar_clean.is_set(), on_fetched, done)
                except Exception as exc:  # never leave the stream blocked on a dead thread
                    failures.append(f"internal error: {type(exc).__name__}: {exc}")
                    _discard(batch)
                    abort.set()

        finisher = threading.Thread(target=finish, name="tar-finish", daemon=True)
        finisher.start()
        try:
            error = self._stream(
                by_name, batches.put, tar_clean, on_bytes, cancel, on_start, abort, on_received
            )
        finally:
            batches.put(None)
            finisher.join()
        error = failures[0] if failures else error
        for name, item in by_name.items():
            if name not in done:
                kind = FileKind.CANCELLED if cancel.is_set() else FileKind.TRANSFER
                on_fetched(
                    Fetched(item, None, error=error or "not in the tar stream", error_kind=kind)
                )

    def _hand_over(
        self,
        batch: list[Received],
        tar_confirmed: bool,
        on_fetched: OnFetched,
        done: set[bytes],
    ) -> None:
        """Make a batch durable (one syncfs), check it on the remote (unless tar itself
        finished cleanly: GNU tar fails with "file changed as we read it"), hand it over."""
        good = [got for got in batch if got.failure is None]
        if good:
            sync_filesystem(os.path.dirname(good[0].temp))
        changed: set[bytes] = set()
        check_error = None
        if good and not tar_confirmed:
            changed, check_error = self._changed(good)
        for got in batch:
            done.add(got.item.remote.path)
            if got.failure is not None:
                _unlink(got.temp)
                on_fetched(
                    Fetched(
                        got.item,
                        None,
                        error=local_failure_text(got.failure),
                        error_kind=local_failure_kind(got.failure),
                    )
                )
            elif check_error is not None:
                # Unconfirmed (the remote did not answer the check): a transfer failure, so
                # the file is fetched again over SFTP in this run, not quietly deferred.
                _unlink(got.temp)
                on_fetched(Fetched(got.item, None, error=check_error, error_kind=FileKind.TRANSFER))
            else:
                on_fetched(
                    Fetched(
                        got.item,
                        got.temp,
                        got.written,
                        got.digest.hexdigest(),
                        changed=got.changed or got.item.remote.path in changed,
                        racy=not settled_by(got.item.remote.mtime_ns, got.read_after_ns),
                    )
                )

    def _stream(
        self,
        by_name: dict[bytes, FetchItem],
        flush: Callable[[list[Received]], None],
        tar_clean: threading.Event,
        on_bytes: OnBytes,
        cancel: threading.Event,
        on_start: OnStart | None,
        abort: threading.Event,
        on_received: OnStart | None = None,
    ) -> str:
        """Run the remote tar and read its stream, handing over finished files in batches
        (FLUSH_FILES files, FLUSH_BYTES bytes or FLUSH_S seconds); set `tar_clean` when tar
        finished cleanly, before the last batch; return an error text."""
        try:
            channel = self._open_tar_channel()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            return f"cannot start remote tar: {exc}"
        names = b"".join(name + b"\0" for name in by_name)
        threading.Thread(target=_send_names, args=(channel, names), daemon=True).start()
        stderr = bytearray()
        drainer = threading.Thread(target=_drain_stderr, args=(channel, stderr), daemon=True)
        drainer.start()
        # Progress counts the files' bytes as they are written (not the stream's headers
        # and padding: a 3 KB file is a 10 KB tar); the limiter counts what the link carries.
        stream = ChannelStream(channel, lambda _count: None, self.limiter, cancel, abort)
        reader = TarReader(
            stream,
            ListedField(by_name, lambda item: item.remote.size),
            ListedField(by_name, lambda item: whole_seconds(item.remote.mtime_ns)),
        )
        current: dict[bytes, Received] = {}
        ready: list[Received] = []
        last_flush = [time.monotonic()]
        ready_bytes = [0]

        def start(name: bytes) -> None:
            item = by_name[name]
            temp = temp_path_for(item.target)
            clock = stream.clock_ns if stream.clock_ns is not None else self.earliest_now()
            current[name] = Received(item, temp, open_temp(temp), hashlib.sha256(), clock)
            if on_start is not None:
                on_start(item)

        def write(name: bytes, chunk: bytes) -> None:
            got = current[name]
            write_all(got.fd, chunk)
            got.digest.update(chunk)
            got.written += len(chunk)
            on_bytes(len(chunk))

        def end(name: bytes, failure: OSError | None) -> None:
            got = current.pop(name)
            os.close(got.fd)
            got.fd = -1
            got.failure = failure
            ready.append(got)
            ready_bytes[0] += got.written
            if failure is None and on_received is not None:
                on_received(got.item)
            if (
                len(ready) >= FLUSH_FILES
                or ready_bytes[0] >= FLUSH_BYTES
                or time.monotonic() - last_flush[0] >= FLUSH_S
            ):
                flush(ready[:])
                ready.clear()
                ready_bytes[0] = 0
                last_flush[0] = time.monotonic()

        error = ""
        clean_exit = False
        try:
            reader.members(write, start, end)
            drainer.join(timeout=self.connection.idle_timeout_s)
            clean_exit = channel.recv_exit_status() == 0 and not stderr.strip()
        except (TarError, Cancelled, OSError, EOFError, paramiko.SSHException) as exc:
            error = "cancelled" if isinstance(exc, Cancelled) else f"tar stream failed: {exc}"
            if not isinstance(exc, Cancelled) and channel.exit_status_ready():
                drainer.join(timeout=1)
                said = bytes(stderr[-300:]).decode(errors="replace").strip()
                error += f" (remote tar exit {channel.recv_exit_status()}: {said or 'no message'})"
        finally:
            close_quietly(channel)
            for got in current.values():  # the member being written when the stream broke
                os.close(got.fd)
                _unlink(got.temp)
        if clean_exit and not reader.refused:
            tar_clean.set()
        if ready:
            flush(ready)
        self.refused = list(reader.refused)  # the caller logs each one
        for name, reason in reader.refused:
            error = error or f"refused member {name!r}: {reason}"
        return error

    def _open_tar_channel(self) -> paramiko.Channel:
        """Start the remote tar: in the shell `prepare` started, or on a new channel."""
        channel = self.connection.open_script(tar_script(self.root), key=self._shell)
        channel.settimeout(self.connection.idle_timeout_s)
        return channel

    def _changed(self, batch: list[Received]) -> tuple[set[bytes], str | None]:
        """Return the names whose remote size or mtime now differ from the listing (changed
        while read), and why the check itself failed (then all count as changed)."""
        expected = {got.item.remote.path: got.item for got in batch}
        names = list(expected)
        try:
            result = self.connection.run(
                sh_command(stat_script(self.root)),
                stdin=b"".join(b"./" + n + b"\0" for n in names),
            )
        except RemoteError as exc:
            return set(names), f"could not confirm it is unchanged: {exc}"
        now = parse_stat(result.stdout)
        changed = set()
        for name in names:
            listed, seen = expected[name].remote, now.get(name)
            if seen is None or seen[0] != listed.size or not same_mtime(seen[1], listed.mtime_ns):
                changed.add(name)
        return changed, None


def _send_names(channel: paramiko.Channel, names: bytes) -> None:
    try:
        channel.sendall(names)
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _drain_stderr(channel: paramiko.Channel, into: bytearray) -> None:
    try:
        while chunk := channel.recv_stderr(65536):
            if len(into) < MAX_STDERR:
                into += chunk
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _discard(batch: list[Received]) -> None:
    """Delete the temporary files of a batch that will not be handed over."""
    for got in batch:
        _unlink(got.temp)


def _unlink(path: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
