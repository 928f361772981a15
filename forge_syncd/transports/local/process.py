"""Run one of the transport scripts (`transports/shell/`) as a local `sh` process: its
output bounded, its whole process group ended when it is done, cancelled or too large."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import IO

from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult

MAX_STDERR = 64 * 1024
CHUNK = 1024 * 1024


def script_env() -> dict[str, str]:
    """The environment a script runs with: ours, in the C locale (find prints numbers the
    parser reads)."""
    return {**os.environ, "LC_ALL": "C"}


def start(script: str, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start `sh -c script` in a session of its own (its group is ended as one)."""
    try:
        return subprocess.Popen(
            ["sh", "-c", script],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=script_env(),
        )
    except OSError as exc:
        raise RemoteError(f"cannot start sh: {exc}") from exc


def end(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group of `process` (what it left running too) and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def run(
    script: str,
    stdin: bytes = b"",
    max_output: int = 64 * 1024**2,
    cancel: threading.Event | None = None,
) -> ScriptResult:
    """Run `sh -c script` with `stdin`; return its status and output. Raise OutputTooLarge
    past `max_output` bytes of stdout, RemoteError("cancelled") when `cancel` is set first."""
    process = start(script, subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    feeder = threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True)
    feeder.start()
    stderr = bytearray()
    drainer = threading.Thread(target=_drain, args=(process, stderr), daemon=True)
    drainer.start()
    stop = cancel or threading.Event()
    done = threading.Event()
    killer = threading.Thread(target=_kill_on, args=(stop, done, process), daemon=True)
    killer.start()
    out = bytearray()
    try:
        while chunk := os.read(process.stdout.fileno(), CHUNK):
            out += chunk
            if len(out) > max_output:
                raise OutputTooLarge(f"more than {max_output} bytes of output")
        status = process.wait()
    finally:
        done.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # what the script left running
        process.wait()
        drainer.join(5)
        end(process)
    if stop.is_set():
        raise RemoteError("cancelled")
    return ScriptResult(status, bytes(out), bytes(stderr))


def _feed(pipe: IO[bytes], data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        pipe.write(data)
        pipe.close()


def _drain(process: subprocess.Popen[bytes], into: bytearray) -> None:
    assert process.stderr is not None
    with contextlib.suppress(OSError, ValueError):
        while chunk := os.read(process.stderr.fileno(), 65536):
            if len(into) < MAX_STDERR:
                into += chunk


def _kill_on(
    stop: threading.Event, done: threading.Event, process: subprocess.Popen[bytes]
) -> None:
    while not done.wait(0.2):
        if stop.is_set():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            return
