"""Check a parsed config document against the schema, collecting every problem.

`check_map` walks a mapping with its `Key`s and returns the accepted values, each with the
line it was written on (so merged values still report where they came from); problems go
to the `Issues` list, never raised one at a time.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from forge_syncd.config.bwlimit import parse_bwlimit, parse_bwlimit_cap
from forge_syncd.config.dockerhost import parse_docker_host
from forge_syncd.config.schema import SINK_COMMON, SINKS, TRANSPORTS_LATER, Key
from forge_syncd.config.transports import transport_issues
from forge_syncd.config.units import parse_delay, parse_duration, parse_rate, parse_size
from forge_syncd.config.yamlnodes import LineDict, LineList

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    key_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key_path}: {self.message}"


@dataclass(frozen=True)
class Checked:
    """An accepted value and the line it was written on."""

    value: Any
    line: int


class Issues(list[ConfigIssue]):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def add(self, line: int, key_path: str, message: str) -> None:
        self.append(ConfigIssue(self.file, line, key_path, message))


def describe(value: Any) -> str:
    return TYPE_NAMES.get(type(value), type(value).__name__)


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid: " + ", ".join(choices)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"expected a non-empty string, got {describe(value)}")
    return value


def _int(value: Any, key: Key) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {describe(value)}")
    if key.minimum is not None and value < key.minimum:
        raise ValueError(f"must be at least {key.minimum}")
    if key.maximum is not None and value > key.maximum:
        raise ValueError(f"must be at most {key.maximum}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _enum(value: Any, key: Key) -> str:
    if not isinstance(value, str) or value not in key.choices:
        hint = did_you_mean(str(value), key.choices) if isinstance(value, str) else ""
        allowed = ", ".join(key.choices)
        raise ValueError(
            f"must be one of {allowed}, not {value!r}"
            + (f" ({hint})" if hint.startswith("did") else "")
        )
    return value


def _transport(value: Any, key: Key) -> str:
    """`transport`: one of the transports of this version; SPEC's others are named as such."""
    if isinstance(value, str) and value in TRANSPORTS_LATER:
        raise ValueError(
            f"{value!r} is not available in this version (valid: {', '.join(key.choices)})"
        )
    return _enum(value, key)


def _docker_host(value: Any) -> str:
    """`docker.host`: the engine's unix socket or an engine over SSH, as Docker writes
    them (unix:///path, ssh://[user@]host[:port])."""
    text = _text(value)
    parse_docker_host(text)
    return text


def _abspath(value: Any) -> Path:
    text = _text(value)
    if not text.startswith("/"):
        raise ValueError(f"must be an absolute path, not {text!r}")
    return Path(text)


def _relpath(value: Any) -> str:
    text = _text(value).strip("/")
    parts = text.split("/")
    if not text or ".." in parts or text.startswith("-"):
        raise ValueError(f"must be a folder under root, without '..' or a leading '-': {value!r}")
    return text


def _name(value: Any) -> str:
    text = _text(value) if isinstance(value, str) else str(value)
    if not NAME.match(text):
        raise ValueError(f"{text!r} must match [a-z0-9][a-z0-9_-]*")
    return text


def _host(value: Any) -> str:
    text = _text(value)
    if text.startswith("-") or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not a host name or address")
    return text


def _cron(value: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger

    text = _text(value)
    try:
        CronTrigger.from_crontab(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid crontab line ({exc})") from None
    return text


def _listen(value: Any) -> tuple[str, int]:
    text = _text(value)
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port like 127.0.0.1:9721, not {text!r}")
    return host, int(port)


def _url(value: Any) -> str:
    text = _text(value)
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"expected an http:// or https:// URL, not {text!r}")
    return text


def _keep(value: Any) -> float | str:
    """`keep_versions`: "all", or a duration (0 keeps none)."""
    if value == "all":
        return "all"
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError("expected all, or a duration like 30d (0 keeps no versions)") from None


GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")


def _group(value: Any) -> str:
    text = _text(value)
    if not GROUP.match(text):
        raise ValueError(f"{text!r} is not a group name")
    return text


def _mode(value: Any, allowed: int, needed: int, what: str) -> int:
    """An octal mode given as a string ("0640"): only `allowed` bits, all `needed` bits."""
    if not isinstance(value, str):
        raise ValueError(
            f'expected an octal string like "0640" (quoted: YAML reads 0640 unquoted as a'
            f" number), got {describe(value)}"
        )
    if not re.fullmatch(r"[0-7]{3,4}", value):
        raise ValueError(f'expected an octal mode of 3 or 4 digits like "0640", not {value!r}')
    mode = int(value, 8)
    if mode & ~allowed:
        raise ValueError(f"{value!r}: {what} may not set bits {mode & ~allowed:04o}")
    if mode & needed != needed:
        raise ValueError(
            f"{value!r}: the daemon's own user needs {needed:04o} ({what}): the daemon could"
            " not use what it made"
        )
    return mode


def _secret_file(value: Any) -> Path:
    """A file holding a secret: an absolute path to a private, readable one-line file
    (`events/sinks/notify/secrets.py`), never quoted in the message."""
    from forge_syncd.events.sinks.notify.secrets import secret_file_problem

    path = _abspath(value)
    problem = secret_file_problem(path, "file")
    if problem is not None:
        raise ValueError(problem)
    return path


CHAT_ID = re.compile(r"^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31})$")


def _chat_id(value: Any) -> str:
    """A Telegram chat: a number (quoted or not) or a public channel's @name."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not CHAT_ID.match(text):
        raise ValueError(f'expected a chat id like "12345" or "@channel", not {value!r}')
    return text


RCLONE_REMOTE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_. -]{0,63}:[^\x00-\x1f]{0,1000}$")


def _rclone_remote(value: Any) -> str:
    """A remote of the rclone config: `NAME:path` (no on-the-fly `:backend,...:` remote,
    whose options would hold secrets in this file, and no local path)."""
    text = _text(value)
    if not RCLONE_REMOTE.match(text) or text.split(":", 1)[0].endswith(" "):
        raise ValueError(
            f'expected a remote of the rclone config like "nas:forge-media", not {text!r}'
        )
    return text


def _readable_file(value: Any) -> Path:
    """An absolute path to a file this process can read."""
    path = _abspath(value)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise ValueError(f"{path}: not a readable file")
    return path


def _free(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {describe(value)}")
    return dict(value)


# The checks of a scalar type: of its value alone, or (KEYED_CHECKS) with its Key's
# bounds, choices or mode.
CHECKS: dict[str, Callable[[Any], Any]] = {
    "str": _text,
    "glob": _text,
    "bool": _bool,
    "duration": parse_duration,
    "size": parse_size,
    "rate": parse_rate,
    "bwlimit": parse_bwlimit,
    "bwlimit_cap": parse_bwlimit_cap,
    "delay": parse_delay,
    "path": lambda value: Path(_text(value)).expanduser(),
    "abspath": _abspath,
    "relpath": _relpath,
    "name": _name,
    "host": _host,
    "docker_host": _docker_host,
    "cron": _cron,
    "listen": _listen,
    "url": _url,
    "free": _free,
    "secret_file": _secret_file,
    "chat_id": _chat_id,
    "rclone_remote": _rclone_remote,
    "readable_file": _readable_file,
    "keep": _keep,
    "group": _group,
    # Files: permission bits only, the owner reads and writes; folders: also setgid (new
    # folders inherit the group) and sticky, the owner lists, creates and enters.
    "file_mode": lambda value: _mode(value, 0o777, 0o600, "a file mode"),
    "dir_mode": lambda value: _mode(value, 0o3777, 0o700, "a folder mode"),
}
KEYED_CHECKS: dict[str, Callable[[Any, Key], Any]] = {
    "int": _int,
    "enum": _enum,
    "transport": _transport,
    # `sync.connections`: auto (0) or a count within the Key's bounds.
    "connections": lambda value, key: 0 if value == "auto" else _int(value, key),
    # YAML 1.1 reads an unquoted `off` as false.
    "dedupe": lambda value, key: "off" if value is False else _enum(value, key),
}


def check_scalar(value: Any, key: Key) -> Any:
    """Given a value and its Key, return the normalized value or raise ValueError."""
    if key.type in KEYED_CHECKS:
        return KEYED_CHECKS[key.type](value, key)
    return CHECKS[key.type](value)


def check_value(value: Any, key: Key, path: str, line: int, issues: Issues) -> Any:
    """Check any value against its Key; return the accepted value or None (issue added)."""
    if value is None and key.nullable:
        return None
    if key.type == "container" and isinstance(value, LineDict):
        transport_issues(value, path, issues.add)  # keys that depend on `transport:`
    if key.type in ("map", "container"):
        if not isinstance(value, LineDict):
            issues.add(line, path, f"expected a mapping, got {describe(value)}")
            return None
        return check_map(value, key.keys, path, issues)
    if key.type == "list":
        return check_list(value, key, path, line, issues)
    if key.type == "sink":
        return check_sink(value, path, line, issues)
    try:
        return check_scalar(value, key)
    except ValueError as exc:
        issues.add(line, path, str(exc))
        return None


def check_list(value: Any, key: Key, path: str, line: int, issues: Issues) -> list[Checked] | None:
    if not isinstance(value, LineList):
        issues.add(line, path, f"expected a list, got {describe(value)}")
        return None
    assert key.item is not None
    accepted = []
    for index, (item, item_line) in enumerate(zip(value, value.item_lines, strict=True)):
        checked = check_value(item, key.item, f"{path}[{index}]", item_line, issues)
        if checked is not None:
            accepted.append(Checked(checked, item_line))
    if key.required and not value:
        issues.add(line, path, "must not be empty")
    return accepted


def check_map(
    value: LineDict, keys: dict[str, Key], path: str, issues: Issues
) -> dict[str, Checked]:
    """Check a mapping: unknown keys (with a suggestion), each value, required keys."""
    accepted: dict[str, Checked] = {}
    prefix = f"{path}." if path else ""
    for name, item in value.items():
        key_path = f"{prefix}{name}"
        if name not in keys:
            issues.add(
                value.key_lines[name], key_path, f"unknown key ({did_you_mean(name, list(keys))})"
            )
            continue
        line = value.value_lines[name]
        checked = check_value(item, keys[name], key_path, line, issues)
        if checked is not None or (item is None and keys[name].nullable):
            accepted[name] = Checked(checked, line)
    for name, key in keys.items():
        if key.required and name not in value:
            issues.add(value.line, f"{prefix}{name}", "required key is missing")
    if "interval" in accepted and "schedule" in accepted:
        issues.add(
            value.key_lines["schedule"],
            f"{prefix}schedule",
            "set either interval or schedule, not both",
        )
    return accepted


def check_sink(value: Any, path: str, line: int, issues: Issues) -> dict[str, Checked] | None:
    """A sink's keys depend on its `type`."""
    if not isinstance(value, LineDict):
        issues.add(line, path, f"expected a mapping, got {describe(value)}")
        return None
    sink_type = value.get("type")
    if sink_type not in SINKS:
        return check_map(value, SINK_COMMON, path, issues) and None
    return check_map(value, {**SINK_COMMON, **SINKS[sink_type]}, path, issues)
