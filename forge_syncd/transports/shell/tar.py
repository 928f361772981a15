"""The tar stream's remote side: the script that streams the names on its stdin, and the
post-check that stats them again, with the parser of its output."""

from __future__ import annotations

import shlex

from forge_syncd.mtimes import parse_seconds


def tar_script(root: str) -> str:
    """The remote side: the clock, then GNU tar of the NUL-separated relative names on
    stdin."""
    return (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        "printf '\\036T%s\\036' \"$(date +%s.%N 2>/dev/null)\"\n"
        "exec tar -c -f - -H gnu --null --no-recursion --verbatim-files-from -T -\n"
    )


def stat_script(root: str) -> str:
    """The post-check: size, mtime (find's `%T@`, to the nanosecond) and name of each name
    on stdin (sent as `./name`, so no name is taken for one of find's options)."""
    find = "exec find \"$@\" -maxdepth 0 -printf '%s %T@ %p\\0'"
    return f"cd -- {shlex.quote(root)} || exit 3\nexec xargs -0 -r sh -c {shlex.quote(find)} sh\n"


def parse_stat(output: bytes) -> dict[bytes, tuple[int, int]]:
    """Given the post-check's output, return {name: (size, mtime_ns)}."""
    found: dict[bytes, tuple[int, int]] = {}
    for record in output.split(b"\0"):
        parts = record.split(b" ", 2)
        if len(parts) != 3 or not parts[2].startswith(b"./"):
            continue
        mtime_ns = parse_seconds(parts[1])
        if parts[0].isdigit() and len(parts[0]) <= 20 and mtime_ns is not None:
            found[parts[2][2:]] = (int(parts[0]), mtime_ns)
    return found
