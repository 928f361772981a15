"""sha256 of remote files in one process for a whole batch: the script (python3's hashlib where
the container has it: OpenSSL's sha256, ~5 times coreutils' `sha256sum` on this hardware;
else `sha256sum`) and the parser of its output."""

from __future__ import annotations

import re
import shlex

HASH_LINE = re.compile(rb"^\\?([0-9a-f]{64}) [ *](.*)$", re.DOTALL)


# Prints what `sha256sum -z` prints, one file at a time (flushed: a cancelled run closes
# the channel and the next write ends it). Python 3.4 and later.
PYTHON_HASH = r"""
import hashlib, sys
out = sys.stdout.buffer
for name in sys.stdin.buffer.read().split(b"\0"):
    if not name:
        continue
    digest = hashlib.sha256()
    try:
        with open(name, "rb") as handle:
            while True:
                chunk = handle.read(1048576)
                if not chunk:
                    break
                digest.update(chunk)
    except (OSError, ValueError):
        continue
    out.write(digest.hexdigest().encode() + b"  " + name + b"\0")
    out.flush()
"""


def with_python(root: str, python: str, fallback: str) -> str:
    """Return a sh script that, in `root`, runs the python3 program `python` where the
    container has a python3 that works (isolated mode: no environment, no user site; one
    start of it to check, ~20 ms), else the sh command `fallback`; both read the caller's
    stdin."""
    return (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        "if python3 -I -c 'import hashlib' >/dev/null 2>&1; then\n"
        f"  exec python3 -I -c {shlex.quote(python)}\n"
        "fi\n"
        f"exec {fallback}\n"
    )


def hash_script(root: str) -> str:
    """Return the sh script that hashes the NUL-separated relative names on its stdin."""
    return with_python(root, PYTHON_HASH, "xargs -0 -r sha256sum -z --")


def parse_sha256sum_z(output: bytes, wanted: set[bytes]) -> dict[bytes, str]:
    """Given `sha256sum -z` output, return {name: hex digest} for the names we asked for
    (a last record cut off before its NUL is ignored: its name could be cut short)."""
    hashes: dict[bytes, str] = {}
    for record in output.split(b"\0")[:-1]:
        match = HASH_LINE.match(record)
        if match and match.group(2) in wanted:
            hashes[match.group(2)] = match.group(1).decode()
    return hashes
