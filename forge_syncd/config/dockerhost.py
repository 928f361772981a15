"""`docker.host`: where the Docker engine answers, as Docker writes it. `unix:///path` (its
socket on this machine) or `ssh://[user@]host[:port]` (an engine on another machine,
reached as Docker's own CLI reaches it: `ssh ... docker system dial-stdio`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A DNS name or an IPv4 address (an IPv6 one in brackets), and a login name, as the SSH
# TARGET of `forge-syncctl add` takes them.
HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$")
IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
MAX_HOST = 1024


@dataclass(frozen=True)
class SshEngine:
    """An engine reached over SSH: the login (None: the SSH client's own default), the
    host and the port."""

    user: str | None
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{host}:{self.port}"


def parse_docker_host(text: str) -> str | SshEngine:
    """Given `docker.host`, return the socket path of `unix:///path` or the SshEngine of
    `ssh://[user@]host[:port]`. Raise ValueError saying what is expected."""
    expected = "expected unix:///path or ssh://[user@]host[:port]"
    if len(text) > MAX_HOST or not text.isprintable():
        raise ValueError(f"not a Docker host: over {MAX_HOST} characters or unprintable")
    if text.startswith("unix:///"):
        return text[len("unix://") :]
    if not text.startswith("ssh://"):
        raise ValueError(f"{text!r}: {expected}")
    rest = text[len("ssh://") :]
    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not USER.match(user):
            raise ValueError(f"{text!r}: {user!r} is not a user name; {expected}")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not IPV6.match(host) or (tail and not tail.startswith(":")):
            raise ValueError(f"{text!r}: not [IPv6 address]:port; {expected}")
        port_text = tail[1:] if tail else "22"
    else:
        host, colon, port_text = rest.partition(":")
        port_text = port_text if colon else "22"
        if not HOST_NAME.match(host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or address; {expected}")
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: {port_text!r} is not a port (1-65535); {expected}")
    return SshEngine(user, host, int(port_text))
