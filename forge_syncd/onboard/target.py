"""The TARGET of `forge-syncctl add`: `ssh://[user@]host[:port]` (and, parsed but not
supported yet, `docker://CONTAINER` and `local:/PATH`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# What the config's `host` accepts, and a little stricter: a DNS name, an IPv4 address, or
# an IPv6 address (written in brackets in the target).
HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9_.-]{1,32})?$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
NOT_YET = {
    "docker": "docker:// targets are not supported yet by add; configure the container instead:"
    " {name: NAME, transport: docker, container: CONTAINER, kind: KIND} in a drop-in",
    "local": "local: targets are not supported yet by add; configure the folder instead:"
    " {name: NAME, transport: local, kind: KIND, root: /PATH} in a drop-in",
}


class TargetError(ValueError):
    """The TARGET cannot be used; the message says why and what is expected."""


@dataclass(frozen=True)
class SshTarget:
    """Where `add` logs in. `user` is None when the target names none (the config's
    `defaults.ssh.user`, else root, applies)."""

    host: str
    port: int
    user: str | None


def parse_target(text: str) -> SshTarget:
    """Given the TARGET text, return the SshTarget. Raise TargetError for anything else:
    another scheme, a `docker://` or `local:` target (not supported yet), a malformed
    user, host or port."""
    expected = "expected ssh://[user@]host[:port]"
    if len(text) > 512:
        raise TargetError(f"TARGET is over 512 characters; {expected}")
    scheme, sep, rest = text.partition("://")
    if not sep and text.startswith("local:"):
        scheme = "local"
    if scheme in NOT_YET:
        raise TargetError(NOT_YET[scheme])
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
