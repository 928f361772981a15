"""Run one of the transport scripts (`transports/shell/`) in the container through an exec
stream: its stdin sent from a thread, its output bounded in size and in idle time, and
what it left running killed when it is cancelled, too large or silent."""

from __future__ import annotations

import contextlib
import threading

from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.docker.engine import Engine, ExecStream
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult


def start(engine: Engine, script: str, stdin: bytes | None) -> ExecStream:
    """Start `sh -c script` in the container; `stdin` (None: no stdin) sent from a thread,
    then ended."""
    stream = engine.exec(["sh", "-c", script], stdin=stdin is not None)
    if stdin is not None:
        threading.Thread(target=_feed, args=(stream, stdin), daemon=True).start()
    return stream


def run(
    engine: Engine,
    script: str,
    stdin: bytes | None = None,
    max_output: int = 64 * 1024**2,
    cancel: threading.Event | None = None,
    idle_timeout_s: float | None = -1.0,
) -> ScriptResult:
    """Run `sh -c script`; return its exit status and output. Raise OutputTooLarge past
    `max_output` bytes, RemoteError("cancelled") when `cancel` is set first, RemoteError
    when its stream breaks or it falls silent for `idle_timeout_s` (default: the engine's
    timeout; None: never, for scripts that may think long and are stopped by `cancel`)."""
    stream = start(engine, script, stdin)
    if idle_timeout_s is None or idle_timeout_s > 0:
        stream.sock.settimeout(idle_timeout_s)
    stop = cancel or threading.Event()
    done = threading.Event()
    watcher = threading.Thread(target=_close_on, args=(stop, done, stream), daemon=True)
    watcher.start()
    out = bytearray()
    finished = False
    try:
        while chunk := stream.read():
            out += chunk
            if len(out) > max_output:
                raise OutputTooLarge(f"more than {max_output} bytes of output")
        finished = True
    except OSError as exc:
        if stop.is_set():
            raise RemoteError("cancelled") from exc
        raise RemoteError(f"the exec stream failed: {exc}") from exc
    finally:
        done.set()
        stream.close(kill=not finished)
    if stop.is_set():
        raise RemoteError("cancelled")
    status = stream.exit_code()
    if status is None:
        raise RemoteError("the Docker engine did not say how the script ended")
    return ScriptResult(status, bytes(out), bytes(stream.stderr))


def _feed(stream: ExecStream, data: bytes) -> None:
    with contextlib.suppress(OSError):
        stream.send(data)
        stream.close_stdin()


def _close_on(stop: threading.Event, done: threading.Event, stream: ExecStream) -> None:
    while not done.wait(0.2):
        if stop.is_set():
            with contextlib.suppress(OSError):
                stream.sock.shutdown(2)  # the reader wakes with an error
            return
