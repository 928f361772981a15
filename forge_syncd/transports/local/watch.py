"""Live mode on this machine: the watcher script (`transports/shell/watch.py`: inotifywait,
else python3's inotify, else the find detector) run as a local process, its records parsed
as untrusted as a container's (a hostile name is checked the same way)."""

from __future__ import annotations

import os
import select
import subprocess
import time

from forge_syncd.remote.errors import RemoteError, WatchEnded
from forge_syncd.remote.types import WatchRecord
from forge_syncd.transports.local import process
from forge_syncd.transports.shell.watch import WatchOutput, watcher_script

MAX_BUFFER = 256 * 1024


class LocalWatch(WatchOutput):
    """A running local watcher: its process, read record by record."""

    def __init__(self, running: subprocess.Popen[bytes], keepalive_s: float) -> None:
        super().__init__(keepalive_s)
        self.process = running
        self._last = time.monotonic()

    @classmethod
    def start(cls, root: str, folders: tuple[str, ...], keepalive_s: float) -> LocalWatch:
        """Start the watcher script; its stdin is a pipe we hold (it ends when we close
        it, and the script ends its process group). Raise RemoteError."""
        try:
            running = process.start(
                watcher_script(root, folders, keepalive_s), stdin=subprocess.PIPE
            )
        except RemoteError as exc:
            raise RemoteError(f"cannot start the local watcher: {exc}") from exc
        return cls(running, max(1.0, keepalive_s))

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        """Wait up to `timeout` seconds for output; return the records that came and the
        problems found. Raise WatchEnded when the watcher is gone."""
        stdout = self.process.stdout
        assert stdout is not None
        fd = stdout.fileno()
        data = b""
        ended = False
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        while ready and len(data) < MAX_BUFFER:
            chunk = os.read(fd, 65536)
            if not chunk:
                ended = True
                break
            data += chunk
            ready, _, _ = select.select([fd], [], [], 0)
        self.received += len(data)
        self._drop_stderr()
        now = time.monotonic()
        if not data:
            if ended or self.process.poll() is not None:
                raise WatchEnded("the local watcher ended")
            if now - self._last > self.silence_s:
                raise WatchEnded(f"the local watcher fell silent for {self.silence_s:.0f}s")
            return [], []
        self._last = now
        return self.take(data)

    def _drop_stderr(self) -> None:
        """What the tools print on stderr is dropped (never read as records)."""
        stderr = self.process.stderr
        assert stderr is not None
        while select.select([stderr.fileno()], [], [], 0)[0]:
            if not os.read(stderr.fileno(), 65536):
                break

    def close(self) -> None:
        process.end(self.process)
