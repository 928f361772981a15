"""Live mode in a container: the watcher script (`transports/shell/watch.py`) on an exec
stream whose stdin we hold open (closing it ends the script and its process group), its
records parsed as untrusted as over SSH."""

from __future__ import annotations

import contextlib
import select
import time

from forge_syncd.remote.errors import RemoteError, WatchEnded
from forge_syncd.remote.types import WatchRecord
from forge_syncd.transports.docker.engine import Engine, ExecStream
from forge_syncd.transports.shell.watch import parse_records, watcher_script

MAX_BUFFER = 256 * 1024


class DockerWatch:
    """A running watcher in the container, read record by record."""

    def __init__(self, stream: ExecStream, keepalive_s: float) -> None:
        self.stream = stream
        self.keepalive_s = keepalive_s
        self.backend = ""
        self.received = 0
        self._buffer = b""
        self._last = time.monotonic()

    @classmethod
    def start(
        cls, engine: Engine, root: str, folders: tuple[str, ...], keepalive_s: float
    ) -> DockerWatch:
        """Start the watcher script with stdin open. Raise RemoteError."""
        stream = engine.exec(["sh", "-c", watcher_script(root, folders, keepalive_s)], True)
        return cls(stream, max(1.0, keepalive_s))

    @property
    def silence_s(self) -> float:
        """As over SSH: four keepalives of an inotify watcher, else 130 s."""
        if self.backend in ("inotifywait", "python3"):
            return 4 * self.keepalive_s
        return max(4 * self.keepalive_s, 130.0)

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        """Wait up to `timeout` s; return the records that came and problems found. Raise
        WatchEnded when the watcher is gone."""
        data = b""
        ended = False
        sock = self.stream.sock
        try:
            ready = self.stream.buffered() or select.select([sock], [], [], max(0.0, timeout))[0]
            while ready and len(data) < MAX_BUFFER:
                chunk = self.stream.read()
                if not chunk:
                    ended = True
                    break
                data += chunk
                ready = self.stream.buffered() or select.select([sock], [], [], 0)[0]
        except (OSError, ValueError, RemoteError) as exc:
            raise WatchEnded(f"the container's watcher stream broke: {exc}") from exc
        self.received += len(data)
        now = time.monotonic()
        if not data:
            if ended:
                raise WatchEnded("the container's watcher ended")
            if now - self._last > self.silence_s:
                raise WatchEnded(f"the container's watcher fell silent for {self.silence_s:.0f}s")
            return [], []
        self._last = now
        self._buffer += data
        records, used, problems = parse_records(self._buffer)
        self._buffer = self._buffer[used:]
        for record in records:
            if record.event == "h":
                self.backend = record.message
        return records, problems

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
