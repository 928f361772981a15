"""The control protocol: newline-delimited JSON requests and responses (SPEC "Control
protocol"). Pure: parsing and building lines; no sockets here."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from forge_syncd.control import methods

PROTOCOL_VERSION = 1
MAX_LINE = 1024 * 1024

# The method names (control/methods.py holds the list, with each method's params).
METHODS = frozenset(methods.METHODS)

# Stable error codes; forge-syncctl maps them to its exit codes.
BAD_REQUEST = "bad_request"
UNKNOWN_METHOD = "unknown_method"
BAD_PARAMS = "bad_params"
NOT_FOUND = "not_found"
TOO_LARGE = "too_large"
FORBIDDEN = "forbidden"
INTERNAL = "internal"
# `cleanup` named a container whose config has cleanup off (and no `force`).
CLEANUP_DISABLED = "cleanup_disabled"
# The daemon cannot serve this now: every control connection is in use (the connection is
# then closed). forge-syncctl exits 3, as for a daemon it cannot reach.
BUSY = "busy"
# The request's work took too long (a catalog database that does not answer): exit 1.
TIMEOUT = "timeout"
# `add`: the NAME is already defined (the message says where): exit 2.
EXISTS = "exists"
# `add`: the box's host key differs from the fingerprint given, or from the one a
# configured container of the same address trusts: exit 1.
HOST_KEY = "host_key"
# `add`/`remove` could not be done (the box unreachable, nothing detected, a file that
# cannot be written, a reload refused): exit 1.
FAILED = "failed"
# `remove`: the box holds media the library has not got, and no `force`: exit 1.
AT_RISK = "at_risk"
# `remove`: the container is defined by hand (main config, an admin's drop-in) or by
# discovery; the message names the file and line, or the source: exit 1.
NOT_REMOVABLE = "not_removable"
ERROR_CODES = frozenset(
    {
        BAD_REQUEST,
        UNKNOWN_METHOD,
        BAD_PARAMS,
        NOT_FOUND,
        TOO_LARGE,
        FORBIDDEN,
        INTERNAL,
        CLEANUP_DISABLED,
        BUSY,
        TIMEOUT,
        EXISTS,
        HOST_KEY,
        FAILED,
        AT_RISK,
        NOT_REMOVABLE,
    }
)


class RequestError(Exception):
    """A request that gets an error response. `request_id` is echoed when it was readable."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class Request(NamedTuple):
    """One request line. (A NamedTuple, not a dataclass: forge-syncctl's fast path does
    not load `dataclasses`.)"""

    id: Any
    method: str
    params: dict[str, Any]


def parse_request(line: bytes) -> Request:
    """Given one line (without its newline), return the Request or raise RequestError."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(BAD_REQUEST, f"not a JSON line: {exc}") from exc
    except RecursionError:
        raise RequestError(BAD_REQUEST, "not a JSON line: nested too deeply") from None
    if not isinstance(message, dict):
        raise RequestError(BAD_REQUEST, "a request is a JSON object")
    request_id = message.get("id")
    if not isinstance(request_id, str | int | None) or isinstance(request_id, bool):
        raise RequestError(BAD_REQUEST, "id must be a number, a string or null")
    if not is_unicode_text(request_id):
        raise RequestError(BAD_REQUEST, "id is not valid Unicode text (a lone surrogate)")
    method = message.get("method")
    if not isinstance(method, str):
        raise RequestError(BAD_REQUEST, "method must be a string", request_id)
    if method not in METHODS:
        known = ", ".join(sorted(METHODS))
        raise RequestError(
            UNKNOWN_METHOD, f"unknown method {method!r} (known: {known})", request_id
        )
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError(BAD_PARAMS, "params must be a JSON object", request_id)
    for name, value in params.items():
        if not is_unicode_text(name) or not is_unicode_text(value):
            raise RequestError(
                BAD_PARAMS,
                f"param {name!r} is not valid Unicode text (it holds a lone surrogate)",
                request_id,
            )
    return Request(request_id, method, params)


def is_unicode_text(value: object) -> bool:
    """Return whether every string in a decoded JSON value (object keys too) is Unicode
    text UTF-8 can encode: JSON's `\\ud800` escape decodes to a lone surrogate, which no
    database, file name or response line can hold."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def ok_line(request_id: Any, result: Any) -> bytes:
    return _line({"id": request_id, "ok": True, "result": result})


def error_line(request_id: Any, code: str, message: str) -> bytes:
    return _line({"id": request_id, "ok": False, "error": {"code": code, "message": message}})


def event_line(event: dict[str, Any]) -> bytes:
    return _line(event)


def _line(message: dict[str, Any]) -> bytes:
    """Return one response line (a lone surrogate goes out as its JSON escape)."""
    return json_text(message, separators=(",", ":")).encode() + b"\n"


SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any, **options: Any) -> str:
    """Return `value` as JSON text that encodes to UTF-8: as `json.dumps(ensure_ascii=False)`,
    but a lone surrogate (a path byte that is not UTF-8, kept by surrogateescape: `find`'s
    `local_path`) is written as its `\\udcXX` escape, which Python's json reads back."""
    text = json.dumps(value, ensure_ascii=False, **options)
    return SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
