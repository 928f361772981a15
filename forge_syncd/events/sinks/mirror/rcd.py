"""One long-lived `rclone rcd` per mirror sink, and calls to its remote-control API.

Why a daemon and not `rclone copyto` per file: the mirror makes three rclone operations per
file (copy, hash, rename) and each `rclone` process starts over (its config, and for SFTP a
new SSH login); the rcd keeps its remotes and connections between calls (measured:
`bench/mirror.py`, README "Mirror").

The rcd listens on 127.0.0.1 on a port it picks (read back from its "Serving remote control
on" line); it requires a user and a password made anew at every start, handed to it in its
environment (`RCLONE_RC_USER`, `RCLONE_RC_PASS`), never on its command line, where `ps`
shows it to every user. Its config file is the sink's `rclone_config`. Its output is read
by a thread that keeps the last lines (for error texts) and logs them at debug level.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import IO, Any

from forge_syncd.logs import get_logger

START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 6 * 3600.0  # one copy of a large file over a slow link
MAX_ANSWER = 1024 * 1024
MAX_LINE = 2000
SERVING = re.compile(r"Serving remote control on http://127\.0\.0\.1:(\d+)/")


class RcloneError(Exception):
    """An rclone call failed; `status` is the HTTP status (0: no answer: the rcd is gone or
    did not answer in time)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message[:1000])
        self.status = status


def rclone_binary() -> str | None:
    """Return the rclone program's path, or None where it is not installed."""
    return shutil.which("rclone")


class RcloneDaemon:
    """An `rclone rcd` started on demand (`ensure`) and ended by its PID (`stop`)."""

    def __init__(
        self,
        config: Path,
        flags: tuple[str, ...] = (),
        sink: str = "",
        pid_file: Path | None = None,
    ) -> None:
        self.config = config
        self.flags = flags
        self.pid_file = pid_file
        self.log = get_logger(sink=sink)
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.tail: deque[str] = deque(maxlen=20)
        self._auth = ""
        self._lock = threading.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def ensure(self) -> None:
        """Start the rcd if it is not running (first use, or it died). Raise RcloneError if
        it cannot start or does not say where it listens in time."""
        with self._lock:
            if self._closed:
                raise RcloneError("the mirror sink is closing")
            if self.process is not None and self.process.poll() is None:
                return
            self._start()

    def _start(self) -> None:
        binary = rclone_binary()
        if binary is None:
            raise RcloneError("rclone is not installed (apt-get install rclone)")
        self._end_orphan()
        self.port = 0
        password = secrets.token_urlsafe(24)
        env = {**os.environ, "RCLONE_RC_USER": "forge-sync", "RCLONE_RC_PASS": password}
        for name in ("RCLONE_RC_NO_AUTH", "RCLONE_RC_SERVE", "RCLONE_RC_ADDR"):
            env.pop(name, None)
        argv = [binary, "--config", str(self.config), "rcd", "--rc-addr=127.0.0.1:0"]
        self.process = subprocess.Popen(
            [*argv, *self.flags],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a terminal's Ctrl-C reaches the daemon, not rclone
        )
        self._auth = "Basic " + base64.b64encode(f"forge-sync:{password}".encode()).decode()
        found = threading.Event()
        assert self.process.stderr is not None
        threading.Thread(
            target=self._read_output, args=(self.process.stderr, found), daemon=True
        ).start()
        if not found.wait(START_TIMEOUT_S) or self.port == 0:
            self.stop()
            raise RcloneError("rclone rcd did not start: " + " | ".join(self.tail))
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n")
        self.log.info("mirror_rclone_started", pid=self.process.pid)

    def _end_orphan(self) -> None:
        """End the rcd a daemon killed -9 left running (its own session outlives it): the
        PID in `pid_file`, only while that process is still an `rclone rcd` with our
        config."""
        if self.pid_file is None:
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read(65536).split(b"\0")
        except (OSError, ValueError):
            return
        if b"rcd" not in argv or os.fsencode(self.config) not in argv or pid == os.getpid():
            return
        # Gone before ours starts: both would write the same partial file.
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _alive(pid):
                break
        self.log.info("mirror_rclone_orphan_ended", pid=pid)

    def _read_output(self, stream: IO[bytes], found: threading.Event) -> None:
        for raw in stream:
            line = raw[:MAX_LINE].decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            match = SERVING.search(line)
            if match and not found.is_set():
                self.port = int(match.group(1))
                found.set()
            elif line:
                self.log.debug("mirror_rclone_said", line=line)
        found.set()  # it ended before saying where it listens

    def call(self, method: str, timeout_s: float = CALL_TIMEOUT_S, **params: Any) -> Any:
        """POST `params` to `method`; return the JSON answer. Raise RcloneError with
        rclone's error text (and status), or status 0 when the rcd is gone."""
        self.ensure()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{method}",
            data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json", "Authorization": self._auth},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                return json.loads(response.read(MAX_ANSWER) or b"{}")
        except urllib.error.HTTPError as exc:
            raise RcloneError(_error_text(method, exc), exc.code) from None
        except (OSError, ValueError) as exc:
            raise RcloneError(f"rclone {method}: no answer ({exc})") from None

    def close(self) -> None:
        """Stop the rcd for good: no call starts it again."""
        with self._lock:
            self._closed = True
        self.stop()

    def stop(self) -> None:
        """End the rcd by its PID (SIGTERM, SIGKILL after 10 s); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read(4096)
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def _error_text(method: str, exc: urllib.error.HTTPError) -> str:
    """rclone's `error` field of an HTTP error answer, else its status."""
    try:
        answer = json.loads(exc.read(MAX_ANSWER))
        text = str(answer.get("error") or "")
    except (OSError, ValueError, AttributeError):
        text = ""
    return f"rclone {method}: {text or f'HTTP {exc.code}'}"
