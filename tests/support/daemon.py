"""Start the installed forge-syncd daemon as a subprocess and listen to its sd_notify."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.cli import BIN


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        """Read what arrived; return all messages so far (each split into its lines)."""
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return self.messages
            self.messages.extend(data.decode().splitlines())

    def wait_for(self, line: str, timeout: float = 20, after: int = 0) -> int:
        """Wait until `line` (or a line starting with it) arrives past index `after`;
        return its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, message in enumerate(self.poll()[after:], start=after):
                if message == line or message.startswith(line):
                    return index
        raise AssertionError(f"no {line!r} within {timeout}s; got {self.messages[-20:]}")

    def close(self) -> None:
        self.sock.close()


def start_daemon(
    config: Path,
    notify: NotifySocket | None = None,
    watchdog_usec: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(extra_env or {})
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll `condition` until true; fail after `timeout` seconds (a bound, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
