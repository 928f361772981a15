"""Run a command the way a person sees it: on a pseudo-terminal of a given size."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time


def run_in_terminal(
    argv: list[str],
    timeout: float = 60,
    columns: int = 250,
    lines: int = 50,
    env: dict[str, str] | None = None,
    interrupt_on: bytes | None = None,
) -> tuple[int, bytes]:
    """Run `argv` with stdin, stdout and stderr on a new pseudo-terminal of `columns` x
    `lines` (COLUMNS, LINES and TERM=xterm set; `env` added); return its exit status and
    every byte it wrote there. `interrupt_on`: once the output holds it, press Ctrl-C
    (SIGINT to the terminal's process group), once."""
    fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    process = subprocess.Popen(
        argv,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        env={
            **os.environ,
            "COLUMNS": str(columns),
            "LINES": str(lines),
            "TERM": "xterm",
            **(env or {}),
        },
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
                if interrupt_on is not None and interrupt_on in output:
                    os.killpg(process.pid, signal.SIGINT)
                    interrupt_on = None
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(fd)
