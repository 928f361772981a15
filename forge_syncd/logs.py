"""Structured logs: JSON lines to the log file, and to stderr (readable on a terminal).

Every record has `ts` (ISO 8601 UTC), `level` and `event`; callers add `container`,
`run_id`, `path`, `bytes`, `duration_s`, `error` where they apply. `reopen()` reopens the
log file (after logrotate moved it; the daemon calls it on SIGHUP).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_lock = threading.Lock()
_file: TextIO | None = None
_file_path: Path | None = None


def _timestamp_and_level() -> list[structlog.typing.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]


class _TeeLogger:
    """Writes each rendered record to the log file (JSON) and stderr (JSON or console)."""

    def __init__(self, stderr: TextIO, console: bool) -> None:
        self.stderr = stderr
        self.console = console

    def msg(self, json_line: str, console_line: str) -> None:
        with _lock:
            if _file is not None:
                _file.write(json_line + "\n")
                _file.flush()
            try:
                self.stderr.write((console_line if self.console else json_line) + "\n")
                self.stderr.flush()
            except (OSError, ValueError):
                pass  # a closed stderr (journald restarted) must not stop the daemon

    info = debug = warning = error = critical = exception = log = msg


def _render_both(console: bool) -> structlog.typing.Processor:
    json_renderer = structlog.processors.JSONRenderer(sort_keys=False)
    console_renderer = structlog.dev.ConsoleRenderer(colors=True) if console else None

    def render(logger: Any, name: str, event: structlog.typing.EventDict) -> Any:
        json_line = json_renderer(logger, name, dict(event))
        console_line = console_renderer(logger, name, dict(event)) if console_renderer else ""
        # A dict from the last processor reaches the logger as keyword arguments.
        return {"json_line": json_line, "console_line": console_line}

    return render


def configure(level: str = "info", file: Path | None = None, stderr: TextIO | None = None) -> None:
    """Set up structlog for the process. Safe to call again (a reload)."""
    stream = stderr or sys.stderr
    console = stream.isatty()
    open_log_file(file)
    structlog.configure(
        processors=[
            *_timestamp_and_level(),
            structlog.processors.format_exc_info,
            _render_both(console),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *args: _TeeLogger(stream, console),
        cache_logger_on_first_use=False,
    )
    # paramiko logs handshake failures with tracebacks; we classify and log them ourselves.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    threading.excepthook = log_thread_exception


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread is logged as one record, not a traceback on stderr.

    paramiko's SFTP prefetch thread can outlive its session when a read stops early (a file
    that changed while read): its "Socket is closed" is expected and only logged at debug."""
    thread = args.thread.name if args.thread is not None else "?"
    error = f"{args.exc_type.__name__}: {args.exc_value}"
    log = structlog.get_logger()
    if "_prefetch_thread" in thread and isinstance(args.exc_value, OSError):
        log.debug("thread_ended", thread=thread, error=error)
    else:
        log.error("thread_crashed", thread=thread, error=error)


def open_log_file(path: Path | None) -> None:
    """(Re)open the JSON log file; None closes it."""
    global _file, _file_path
    with _lock:
        if _file is not None:
            _file.close()
            _file = None
        _file_path = path
        if path is not None:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            _file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose


def reopen() -> None:
    """Reopen the log file at the same path (logrotate)."""
    open_log_file(_file_path)


def get_logger(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
