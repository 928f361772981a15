"""A round trip on an open SSH connection, for `bwlimit: auto` and the link's RTT metric.

A `keepalive@openssh.com` global request wanting a reply (OpenSSH answers it with a
failure, as it does ssh's ServerAliveInterval): the answer comes back on the same TCP
connection as our data, so it waits in every queue our transfer fills on the way, which is
what `auto` must see. paramiko's `global_request` is public; it waits on the transport's one
completion event, which a key re-exchange also sets: a re-exchange during a sample (rare:
OpenSSH rekeys after gigabytes) gives one short sample, a lower base delay for ten minutes
at worst."""

from __future__ import annotations

import time

import paramiko

from forge_syncd.transports.ssh.connection import Connection


def round_trip(connection: Connection) -> float | None:
    """Return the seconds one keepalive request took to be answered on `connection`, or
    None when the connection is gone."""
    started = time.monotonic()
    try:
        connection.transport.global_request("keepalive@openssh.com", wait=True)
    except (paramiko.SSHException, OSError, EOFError):
        return None
    if not connection.alive:
        return None
    return time.monotonic() - started
