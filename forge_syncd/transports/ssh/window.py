"""Channel windows sized for the path to a container.

An SSH receive window caps what a channel can have in flight: at most one window per round
trip. paramiko's default (2 MiB) is fine on a LAN and on loopback (where a larger one
measured slower), but over a rented box's WAN it, not the link, sets the speed: 2 MiB per
100 ms is at most 20 MB/s, and measured 13 MB/s on a 25 MB/s link. The window of each
channel is therefore chosen from the round-trip time measured on the connection: twice the
bandwidth-delay product of a link of up to `SIZED_RATE`, never below paramiko's default and
never above `MAX_WINDOW` per container (shared between the channels that transfer at
once), which bounds what unread data one container can make us hold: `MAX_WINDOW`, 8 MiB,
so 400 MiB at 50 containers in the worst case, when every container's reader stalls with
its windows full (a reader that keeps up holds almost nothing). A run's extra connections
(`lanes.py`) share that budget between them (`Connection.window_share`) besides the kept-open
connection's own: 14 MiB at most with 4 connections.
"""

from __future__ import annotations

DEFAULT_WINDOW = 2 * 1024 * 1024  # paramiko's default window (64 packets of 32 KiB)
MAX_WINDOW = 8 * 1024 * 1024  # per container, all its transferring channels together
SIZED_RATE = 64_000_000  # bytes/s: the fastest link a window is sized for (~512 Mbit/s)


def window_for(rtt_s: float, channels: int = 1) -> int:
    """Given the measured round-trip time (seconds) and how many channels transfer at once,
    return each channel's receive window in bytes: 2 x rtt x SIZED_RATE split between the
    channels, at least DEFAULT_WINDOW each, and at most MAX_WINDOW in all (unless the
    channels' DEFAULT_WINDOW floors alone are more: a channel never gets less than
    paramiko's default)."""
    channels = max(1, channels)
    wanted = 2 * max(0.0, rtt_s) * SIZED_RATE
    total = min(max(wanted, DEFAULT_WINDOW), MAX_WINDOW)
    return max(DEFAULT_WINDOW, int(total) // channels)
