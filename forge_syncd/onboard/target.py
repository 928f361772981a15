"""The TARGET of `forge-syncctl add`: `ssh://[user@]host[:port]`, `docker://CONTAINER` (a
container of the Docker engine: its name or id) or `local:/PATH` (a folder of this
machine)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the config's `host` accepts, and a little stricter: a DNS name, an IPv4 address, or
# an IPv6 address (written in brackets in the target).
HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9_.-]{1,32})?$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# Docker's own rule for a container name, or a container id (64 hex digits, or a prefix).
CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_PATH = 4096
EXPECTED = "expected ssh://[user@]host[:port], docker://CONTAINER or local:/PATH"


@dataclass(frozen=True)
class DockerTarget:
    """A container of the Docker engine (`docker.host`), by name or id."""

    container: str


@dataclass(frozen=True)
class LocalTarget:
    """A folder of this machine: an absolute path, without `.`, `..` or doubled slashes."""

    path: str


class TargetError(ValueError):
    """The TARGET cannot be used; the message says why and what is expected."""


@dataclass(frozen=True)
class SshTarget:
    """Where `add` logs in. `user` is None when the target names none (the config's
    `defaults.ssh.user`, else root, applies)."""

    host: str
    port: int
    user: str | None


def parse_target(text: str) -> SshTarget | DockerTarget | LocalTarget:
    """Given the TARGET text, return what it names. Raise TargetError for anything else:
    another scheme, a malformed user, host, port, container name or path."""
    expected = EXPECTED
    if text.startswith("local:"):
        return _local(text[len("local:") :])
    if len(text) > 512:
        raise TargetError(f"TARGET is over 512 characters; {expected}")
    scheme, sep, rest = text.partition("://")
    if sep and scheme == "docker":
        if not CONTAINER.match(rest):
            raise TargetError(f"{rest!r} is not a Docker container name or id; {expected}")
        return DockerTarget(rest)
    if not sep or scheme != "ssh":
        raise TargetError(f"{text!r} is not a target; {expected}")
    if rest.endswith("/"):
        rest = rest[:-1]
    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not USER.match(user):
            raise TargetError(f"{user!r} is not a user name; {expected}")
    host, port = _host_port(rest, expected)
    return SshTarget(host, port, user)


def _host_port(text: str, expected: str) -> tuple[str, int]:
    """Given `host`, `host:port`, `[v6]` or `[v6]:port`, return (host, port)."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or not IPV6.match(host) or (tail and not tail.startswith(":")):
            raise TargetError(f"{text!r} is not [IPv6 address]:port; {expected}")
        port_text = tail[1:] if tail else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        port_text = port_text_or_empty if colon else None
        if not HOST_NAME.match(host) or host.startswith("-"):
            raise TargetError(f"{host!r} is not a host name or address; {expected}")
    if port_text is None:
        return host, 22
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"{port_text!r} is not a port (1-65535); {expected}")
    return host, int(port_text)


def _local(path: str) -> LocalTarget:
    """Given the PATH of `local:PATH`, return it checked (not yet looked at on disk)."""
    if not path.startswith("/") or len(path) > MAX_PATH:
        raise TargetError(f"local: takes an absolute path (local:/PATH), not {path[:80]!r}")
    if not path.isprintable():
        raise TargetError("the local: path holds a control character")
    trimmed = path.rstrip("/") or "/"
    parts = trimmed.split("/")[1:]
    if trimmed != "/" and any(part in ("", ".", "..") for part in parts):
        raise TargetError(f"{path!r}: write the folder's path without //, . or ..")
    return LocalTarget(trimmed)
