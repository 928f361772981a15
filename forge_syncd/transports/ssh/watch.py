"""The SSH side of live mode: the watcher script (`transports/shell/watch.py`) on one exec
channel of the kept-open connection, and the stream of its records."""

from __future__ import annotations

import time

import paramiko

from forge_syncd.remote.errors import RemoteError, WatchEnded
from forge_syncd.remote.types import WatchRecord
from forge_syncd.transports.shell.watch import PUSH_MAX, PushStore, WatchOutput, watcher_script
from forge_syncd.transports.ssh.connection import MAX_PREAMBLE, START_MARKER, Connection
from forge_syncd.transports.ssh.shells import close_quietly

# Bytes read and parsed at once: a flood waits in the channel's window, and live mode checks
# the watcher's budget between reads.
MAX_BUFFER = 256 * 1024


class WatchStream(WatchOutput):
    """A running remote watcher: its channel, read record by record."""

    def __init__(
        self, channel: paramiko.Channel, keepalive_s: float, pushed: PushStore | None = None
    ) -> None:
        """`keepalive_s`: how often the watcher says it is alive when idle (see silence_s);
        `pushed`: where the files the watcher pushes go (None: it pushes none)."""
        super().__init__(keepalive_s, pushed, PUSH_MAX if pushed is not None else 0)
        self.channel = channel
        self._started = False
        self._last = time.monotonic()

    @classmethod
    def start(
        cls,
        connection: Connection,
        root: str,
        folders: tuple[str, ...],
        keepalive_s: float,
        pushed: PushStore | None = None,
    ) -> WatchStream:
        """Start the watcher script on a new channel of `connection` (pushing small files
        to `pushed`, if given). Raise RemoteError."""
        push_max = PUSH_MAX if pushed is not None else 0
        try:
            channel = connection.start_script(watcher_script(root, folders, keepalive_s, push_max))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(f"cannot start the remote watcher: {exc}") from exc
        return cls(channel, max(1.0, keepalive_s), pushed)

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        """Wait up to `timeout` seconds for output; return the records that came and the
        problems found. Raise WatchEnded when the watcher is gone."""
        # A blocking recv with a timeout, not select(): paramiko gives a channel a file
        # descriptor pair only once select() asks for one (two fds a container).
        chunks = []
        ended = False
        self.channel.settimeout(max(0.0, timeout))
        try:
            chunks.append(self.channel.recv(65536))
            ended = not chunks[0]
        except TimeoutError:
            pass
        size = sum(map(len, chunks))
        while size and size < MAX_BUFFER and self.channel.recv_ready():
            chunks.append(self.channel.recv(65536))
            size += len(chunks[-1])
        data = b"".join(chunks)
        self.received += size
        while self.channel.recv_stderr_ready():
            self.channel.recv_stderr(65536)  # only a login shell's chatter: dropped
        now = time.monotonic()
        if not data:
            if ended or self.channel.closed or self.channel.exit_status_ready():
                raise WatchEnded("the remote watcher ended")
            if not self.channel.get_transport().is_active():
                raise WatchEnded("connection lost")
            if now - self._last > self.silence_s:
                raise WatchEnded(f"the remote watcher fell silent for {self.silence_s:.0f}s")
            return [], []
        self._last = now
        if not self._started:
            self.pending += data
            at = self.pending.find(START_MARKER)
            if at < 0:
                if len(self.pending) > MAX_PREAMBLE:
                    raise WatchEnded("the remote watcher never started (no start marker)")
                return [], []
            data, self.pending = bytes(self.pending[at + len(START_MARKER) :]), bytearray()
            self._started = True
        return self.take(data)

    def close(self) -> None:
        close_quietly(self.channel)
