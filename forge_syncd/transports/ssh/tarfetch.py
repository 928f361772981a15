"""The fast transfer strategy: all changed files in one `tar` stream over one exec channel.

Names go to the remote `tar` on stdin, NUL-separated (never on a command line). The stream
is parsed by our own strict reader (`transports/shell/tarstream.py`) straight into
temporary files beside their targets. Files are made durable together with one syncfs(2)
instead of an fsync each, and one remote `stat` of the received names afterwards catches
files that changed while tar read them. Used when the remote has GNU tar, xargs and stat;
otherwise SFTP.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import paramiko

from forge_syncd.errorkinds import FileKind
from forge_syncd.library.localfs import sync_filesystem
from forge_syncd.mtimes import same_mtime, settled_by, whole_seconds
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import (
    EarliestNow,
    FetchCallbacks,
    Fetched,
    FetchItem,
    OnFetched,
    TransferMethod,
)
from forge_syncd.transports.receive import (
    Cancelled,
    MemberWriter,
    RateLimiter,
    Received,
    local_failure_kind,
    local_failure_text,
    unlink_quietly,
)
from forge_syncd.transports.shell.tar import parse_stat, stat_script, tar_script
from forge_syncd.transports.shell.tarstream import TarError, TarReader
from forge_syncd.transports.ssh.channel_stream import ChannelStream, ListedField
from forge_syncd.transports.ssh.connection import (
    Connection,
    sh_command,
)
from forge_syncd.transports.ssh.shells import close_quietly

MAX_STDERR = 1024 * 1024


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
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> None:
        """Stream `items` through one remote tar (`receive.MemberWriter` writes them); each
        is handed to `calls.on_fetched` in the batch it was made durable and checked with,
        and to `calls.on_received` as soon as it has arrived whole (progress moves a file at
        a time, not a batch at a time)."""
        by_name = {item.remote.path: item for item in items}
        done: set[bytes] = set()

        def hand_over(batch: list[Received], tar_confirmed: bool) -> None:
            self._hand_over(batch, tar_confirmed, calls.on_fetched, done)

        with MemberWriter(by_name, calls, hand_over) as writer:
            error = self._stream(writer, cancel)
        error = writer.failures[0] if writer.failures else error
        for name, item in by_name.items():
            if name not in done:
                kind = FileKind.CANCELLED if cancel.is_set() else FileKind.TRANSFER
                calls.on_fetched(
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
                unlink_quietly(got.temp)
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
                unlink_quietly(got.temp)
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

    def _stream(self, writer: MemberWriter, cancel: threading.Event) -> str:
        """Run the remote tar and read its stream into `writer`; tell it whether tar
        finished cleanly (before it hands over the last batch); return an error text."""
        try:
            channel = self._open_tar_channel()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            return f"cannot start remote tar: {exc}"
        by_name = writer.by_name
        names = b"".join(name + b"\0" for name in by_name)
        threading.Thread(target=_send_names, args=(channel, names), daemon=True).start()
        stderr = bytearray()
        drainer = threading.Thread(target=_drain_stderr, args=(channel, stderr), daemon=True)
        drainer.start()
        # Progress counts the files' bytes as they are written (not the stream's headers
        # and padding: a 3 KB file is a 10 KB tar); the limiter counts what the link carries.
        stream = ChannelStream(channel, lambda _count: None, self.limiter, cancel, writer.abort)
        reader = TarReader(
            stream,
            ListedField(by_name, lambda item: item.remote.size),
            ListedField(by_name, lambda item: whole_seconds(item.remote.mtime_ns)),
        )

        def start(name: bytes) -> None:
            clock = stream.clock_ns if stream.clock_ns is not None else self.earliest_now()
            writer.start(name, clock)

        error = ""
        clean_exit = False
        try:
            reader.members(writer.write, start, writer.end)
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
            writer.drop_open()  # the member being written when the stream broke
        writer.stream_ended(clean=clean_exit and not reader.refused)
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
