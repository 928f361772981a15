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
from forge_syncd.transports.shell.watch import WatchOutput, watcher_script

MAX_BUFFER = 256 * 1024


class DockerWatch(WatchOutput):
    """A running watcher in the container, read record by record."""

    def __init__(self, stream: ExecStream, keepalive_s: float) -> None:
        super().__init__(keepalive_s)
        self.stream = stream
        self._last = time.monotonic()

    @classmethod
    def start(
        cls, engine: Engine, root: str, folders: tuple[str, ...], keepalive_s: float
    ) -> DockerWatch:
        """Start the watcher script with stdin open. Raise RemoteError."""
        stream = engine.exec(["sh", "-c", watcher_script(root, folders, keepalive_s)], True)
        return cls(stream, max(1.0, keepalive_s))

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
        return self.take(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
