"""The SSH side of live mode: the watcher script (`transports/shell/watch.py`) on one exec
channel of the kept-open connection, and the stream of its records."""

from __future__ import annotations

import time

import paramiko

from forge_syncd.remote.errors import RemoteError, WatchEnded
from forge_syncd.remote.types import WatchEvent, WatchRecord
from forge_syncd.transports.shell.watch import parse_records, watcher_script
from forge_syncd.transports.ssh.connection import MAX_PREAMBLE, START_MARKER, Connection
from forge_syncd.transports.ssh.shells import close_quietly

# Bytes read and parsed at once: a flood waits in the channel's window, and live mode checks
# the watcher's budget between reads.
MAX_BUFFER = 256 * 1024


class WatchStream:
    """A running remote watcher: its channel, read record by record."""

    def __init__(self, channel: paramiko.Channel, keepalive_s: float) -> None:
        """`keepalive_s`: how often the watcher says it is alive when idle (see silence_s)."""
        self.channel = channel
        self.keepalive_s = keepalive_s
        self.backend = ""
        self.received = 0  # bytes, for live mode's budget
        self._buffer = b""
        self._started = False
        self._last = time.monotonic()

    @classmethod
    def start(
        cls, connection: Connection, root: str, folders: tuple[str, ...], keepalive_s: float
    ) -> WatchStream:
        """Start the watcher script on a new channel of `connection`. Raise RemoteError."""
        try:
            channel = connection.start_script(watcher_script(root, folders, keepalive_s))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(f"cannot start the remote watcher: {exc}") from exc
        return cls(channel, max(1.0, keepalive_s))

    @property
    def silence_s(self) -> float:
        """How long the channel may stay silent before the watcher counts as gone: four
        keepalives of an inotify watcher (each says it is alive every keepalive when idle);
        the find detector, and a watcher still placing its watches, may take a minute
        between records (the detector's period is capped at 60 s)."""
        if self.backend in ("inotifywait", "python3"):
            return 4 * self.keepalive_s
        return max(4 * self.keepalive_s, 130.0)

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
        self._buffer += data
        if not self._started:
            at = self._buffer.find(START_MARKER)
            if at < 0:
                if len(self._buffer) > MAX_PREAMBLE:
                    raise WatchEnded("the remote watcher never started (no start marker)")
                return [], []
            self._buffer = self._buffer[at + len(START_MARKER) :]
            self._started = True
        records, used, problems = parse_records(self._buffer)
        self._buffer = self._buffer[used:]
        for record in records:
            if record.event is WatchEvent.STARTED:
                self.backend = record.message
        return records, problems

    def close(self) -> None:
        close_quietly(self.channel)
