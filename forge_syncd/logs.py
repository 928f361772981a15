"""Structured logs: JSON lines to the log file, and to stderr (readable on a terminal).

Every record has `ts` (ISO 8601 UTC), `level` and `event`; callers add `container`,
`run_id`, `path`, `bytes`, `duration_s`, `error` where they apply. `reopen()` reopens the
log file (after logrotate moved it; the daemon calls it on SIGHUP).

One pipeline for everything: structlog records are handed to the stdlib `logging` root,
whose two handlers (log file, stderr) render every record — ours and those of libraries
such as APScheduler and paramiko — through structlog's `ProcessorFormatter`. A library
record becomes `{"event": "library_log", "logger": ..., "message": ...}`, with its
traceback, if any, as a string in `exception`. On a terminal, control characters in any
value are printed escaped (`\\x1b`), so a remote file name cannot drive the terminal.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

from forge_syncd.text import printable

__all__ = ["configure", "expected_thread_ends", "get_logger", "printable", "reopen"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
OWN_LOGGER = "forge_syncd"
LIBRARY_EVENT = "library_log"
# Predicates saying that an exception ending a thread is expected, not a crash: such an end is
# logged at debug as `thread_ended`. A module adds its own when imported (paramiko's SFTP
# prefetch thread: `transports/ssh/paramiko_patch.py`).
expected_thread_ends: list[Callable[[threading.ExceptHookArgs], bool]] = []
# Library notices that are routine for us, by logger name and their (stable) format string:
# a job still running when its next time comes is skipped by design (coalesced).
ROUTINE_LIBRARY_MESSAGES = (("apscheduler", "maximum number of running instances reached"),)
# Fields whose value is a multi-line text of our own making (a traceback): on a terminal
# their line breaks stay, every other control character is escaped.
MULTILINE_FIELDS = ("exception", "stack")

_lock = threading.Lock()
_file_handler: _QuietStreamHandler | None = None
_stderr_handler: _QuietStreamHandler | None = None
_file_path: Path | None = None
_threshold = logging.INFO


class _Escaped(str):
    """Text shown escaped however a renderer shows it: as itself it is `printable(text)`,
    and its `repr` is the original's (which escapes the same characters, once, and quotes)."""

    original: str

    def __new__(cls, text: str) -> _Escaped:
        escaped = super().__new__(cls, printable(text))
        escaped.original = text
        return escaped

    def __repr__(self) -> str:
        return repr(self.original)


def escape_for_terminal(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """A processor: given an event dict, return it with control characters in every string
    value shown escaped (line breaks kept in tracebacks). The console renderer prints some
    strings as they are and quotes others with `repr`: both ways come out escaped once.
    Non-string values are shown by `repr`, which escapes them already."""
    return {
        key: (printable(value, keep_newlines=True) if key in MULTILINE_FIELDS else _Escaped(value))
        if isinstance(value, str)
        else value
        for key, value in event.items()
    }


def _json_renderer() -> Processor:
    """Return a processor rendering an event dict as one JSON line. DEL is escaped too
    (`json` leaves it raw, being ASCII), so no control character reaches a log reader."""
    render = structlog.processors.JSONRenderer(sort_keys=False)

    def render_json(logger: WrappedLogger, name: str, event: EventDict) -> str:
        line = render(logger, name, event)
        assert isinstance(line, str)  # json.dumps returns str
        # A raw DEL can only stand inside a JSON string, where `\u007f` means the same.
        return line.replace("\x7f", "\\u007f")

    return render_json


def library_record(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """A processor for records of stdlib loggers (libraries): given the event dict that
    `ProcessorFormatter` built (the message as `event`), return it with `ts` (when the
    library logged, so the file and stderr agree), a stable snake_case `event`, the
    library's text in `message` and its logger's name in `logger`."""
    record: logging.LogRecord | None = event.get("_record")
    created = datetime.fromtimestamp(record.created, UTC) if record else datetime.now(UTC)
    event["ts"] = created.isoformat().replace("+00:00", "Z")
    event["message"] = str(event.get("event", ""))
    event["event"] = LIBRARY_EVENT
    event["logger"] = record.name if record is not None else "?"
    return event


def standard_level(level: int) -> int:
    """Given a stdlib level number (libraries may use custom ones), return the standard
    level at or below it (DEBUG at the least)."""
    for candidate in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO):
        if level >= candidate:
            return candidate
    return logging.DEBUG


def library_level(record: logging.LogRecord) -> int:
    """Given a stdlib record, return the level we log it at: its own (as a standard level),
    or DEBUG for a routine library notice (`ROUTINE_LIBRARY_MESSAGES`). The format string
    is matched, not the message: a library gives us no other handle on it."""
    for logger, text in ROUTINE_LIBRARY_MESSAGES:
        if record.name.split(".")[0] == logger and text in str(record.msg):
            return logging.DEBUG
    return standard_level(record.levelno)


class _LibraryLevels(logging.Filter):
    """Sets each record's level by `library_level` and drops what falls below the
    configured level (or below `floor`, this handler's own minimum)."""

    def __init__(self, floor: int = logging.NOTSET, skip: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.floor = floor
        self.skip = skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != OWN_LOGGER:
            record.levelno = library_level(record)
            record.levelname = logging.getLevelName(record.levelno)
        elif self.skip and isinstance(record.msg, dict) and record.msg.get("event") in self.skip:
            return False
        return record.levelno >= max(_threshold, self.floor)


class _QuietStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that drops a record it cannot write (a closed stderr after
    journald restarted, a full disk) instead of printing a traceback: logging must
    never stop the daemon, nor put a non-JSON line on stderr."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def _pre_chain() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    ]


def _formatter(renderer: list[Processor]) -> ProcessorFormatter:
    return ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            library_record,
            structlog.processors.format_exc_info,
        ],
        processors=[ProcessorFormatter.remove_processors_meta, *renderer],
    )


def _handler(
    stream: TextIO,
    renderer: list[Processor],
    floor: int = logging.NOTSET,
    skip: frozenset[str] = frozenset(),
) -> _QuietStreamHandler:
    handler = _QuietStreamHandler(stream)
    handler.setFormatter(_formatter(renderer))
    handler.addFilter(_LibraryLevels(floor, skip))
    return handler


def configure(
    level: str = "info",
    file: Path | None = None,
    stderr: TextIO | None = None,
    stderr_level: str | None = None,
    capture_level: str | None = None,
    stderr_skip: frozenset[str] = frozenset(),
) -> None:
    """Given a level name, an optional log file and a stream for stderr (default
    sys.stderr), set up logging for the process: structlog and the stdlib root logger
    both end in JSON lines to the file and to stderr (console lines when stderr is a
    terminal). `stderr_level`: stderr gets only records at or above it (`--once` keeps its
    terminal for warnings and errors); `capture_level`: our records down to this level
    are made (for a handler of the caller's, e.g. `--once -v`), whatever `level` keeps;
    `stderr_skip`: events not written to stderr (what the caller reports itself). Safe to
    call again (a reload)."""
    global _stderr_handler, _threshold
    stream = stderr or sys.stderr
    floor = LEVELS[stderr_level] if stderr_level else logging.NOTSET
    made = min(LEVELS[level], LEVELS[capture_level]) if capture_level else LEVELS[level]
    console: list[Processor] = [escape_for_terminal, structlog.dev.ConsoleRenderer(colors=True)]
    root = logging.getLogger()
    with _lock:
        _threshold = LEVELS[level]
        if _stderr_handler is not None:
            root.removeHandler(_stderr_handler)
        renderer = console if stream.isatty() else [_json_renderer()]
        _stderr_handler = _handler(stream, renderer, floor, stderr_skip)
        root.addHandler(_stderr_handler)
        root.setLevel(_threshold)
    open_log_file(file)
    structlog.configure(
        processors=[
            *_pre_chain(),
            structlog.processors.format_exc_info,
            ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(made),
        logger_factory=lambda *args: logging.getLogger(OWN_LOGGER),
        cache_logger_on_first_use=False,
    )
    # Our own records are filtered by structlog; the stdlib must let them all through.
    logging.getLogger(OWN_LOGGER).setLevel(logging.DEBUG)
    # paramiko logs handshake failures with tracebacks; we classify and log them ourselves.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    # APScheduler says "Running job"/"executed successfully" at info for every run.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    threading.excepthook = log_thread_exception
    sys.excepthook = log_uncaught_exception


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread is logged as one record, not a traceback on stderr;
    an end one of `expected_thread_ends` expects is only logged at debug."""
    thread = args.thread.name if args.thread is not None else "?"
    error = f"{args.exc_type.__name__}: {args.exc_value}"
    log = structlog.get_logger()
    if any(expected(args) for expected in expected_thread_ends):
        log.debug("thread_ended", thread=thread, error=error)
    else:
        log.error("thread_crashed", thread=thread, error=error)


def log_uncaught_exception(
    exc_type: type[BaseException], exc_value: BaseException, traceback: TracebackType | None
) -> None:
    """An exception that ends the main thread is one `uncaught_exception` record with its
    traceback in `exception`, not plain-text lines on stderr (Ctrl-C keeps Python's way)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc_value, traceback)
        return
    structlog.get_logger().critical(
        "uncaught_exception",
        error=f"{exc_type.__name__}: {exc_value}",
        exc_info=(exc_type, exc_value, traceback),
    )


def open_log_file(path: Path | None) -> None:
    """(Re)open the JSON log file at `path`; None closes it. A record being written while
    the file is swapped goes wholly to the old file or wholly to the new one."""
    global _file_handler, _file_path
    root = logging.getLogger()
    with _lock:
        _file_path = path
        if path is None:
            if _file_handler is not None:
                root.removeHandler(_file_handler)
                _file_handler.stream.close()
                _file_handler = None
            return
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose
        if _file_handler is None:
            _file_handler = _handler(stream, [_json_renderer()])
            root.addHandler(_file_handler)
        else:
            old = _file_handler.setStream(stream)
            if old is not None:
                old.close()


def reopen() -> None:
    """Reopen the log file at the same path (logrotate)."""
    open_log_file(_file_path)


def get_logger(**context: Any) -> Any:
    """Given context fields, return a structlog logger bound to them."""
    return structlog.get_logger().bind(**context)
