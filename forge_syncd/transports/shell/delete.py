"""The delete script: it deletes remote files in batches, each only if it still has the size
and mtime we decided on and, hashed on the container at that moment, the sha256 of the library
copy; and the parser of its report of which ones are gone and which hold other bytes."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from forge_syncd.mtimes import whole_seconds
from forge_syncd.remote.types import Deleted, RemoteFile
from forge_syncd.transports.shell.hashing import with_python

# Each name travels with the size, the whole-second and the nanosecond mtime it must still
# have and the sha256 its bytes must have. Each deleted name comes back as `D<name>\0`; one
# whose bytes differ as `H<name>\0`; one that changed size or mtime, vanished, cannot be
# read, or changed while it was hashed, not at all. Hash and delete happen per file, one
# right after the other, and the name is deleted only if it is still the very file that was
# hashed (same inode, size, mtime and ctime before and after: a file renamed over the name
# or rewritten during the hash holds bytes no library has).
#
# Where the container has python3: one process hashes with OpenSSL's sha256 (~5 times
# coreutils' sha256sum here), through the descriptor it checked, and compares mtimes at the
# listing's precision (`mtimes`).
PYTHON_DELETE = r"""
import hashlib, os, stat, sys
NS = 1000000000
out = sys.stdout.buffer
fields = sys.stdin.buffer.read().split(b"\0")
for at in range(0, len(fields) - 4, 5):
    name, size, _seconds, mtime, want = fields[at:at + 5]
    try:
        info = os.lstat(name)
        listed, found = int(mtime), info.st_mtime_ns
        whole = listed % NS == 0 or found % NS == 0
        same = found == listed or (whole and found // NS == listed // NS)
        if not stat.S_ISREG(info.st_mode) or info.st_size != int(size) or not same:
            continue
        digest = hashlib.sha256()
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(name, flags), "rb") as f:
            held = os.fstat(f.fileno())
            if (held.st_dev, held.st_ino) != (info.st_dev, info.st_ino):
                continue
            while True:
                chunk = f.read(1048576)
                if not chunk:
                    break
                digest.update(chunk)
            after = os.fstat(f.fileno())
        if digest.hexdigest().encode() != want:
            out.write(b"H" + name + b"\0")
            continue
        now = os.lstat(name)
        seen = lambda s: (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
        if not (seen(held) == seen(after) == seen(now)):
            continue
        os.unlink(name)
        out.write(b"D" + name + b"\0")
    except (OSError, ValueError):
        continue
    out.flush()
"""


# Else xargs hands `sh` the quintuples as arguments (never as code), `sha256sum < "$f"`
# hashes the open file (its name is never an option), and `stat` before and after the hash
# checks size, whole-second mtime, inode and ctime (%z: to the nanosecond). -n 25 keeps
# quintuples together and well below xargs' 128 KiB command-line default even for 4 KiB
# names; -x fails rather than split one.
DELETE_LOOP = (
    'while [ "$#" -ge 5 ]; do f=$1; want=$2:$3; sum=$5; shift 5; '
    'seen=$(stat -c %s:%Y/%i/%z -- "$f" 2>/dev/null); '
    'if [ "${seen%%/*}" = "$want" ] '
    '&& h=$(sha256sum < "$f" 2>/dev/null); then h=${h%% *}; '
    'if [ "$h" != "$sum" ]; then printf "H%s\\0" "$f"; '
    'elif [ "$(stat -c %s:%Y/%i/%z -- "$f" 2>/dev/null)" = "$seen" ] '
    '&& rm -f -- "$f"; then printf "D%s\\0" "$f"; fi; fi; done'
)


def delete_script(root: str) -> str:
    """Return the sh script that deletes the (name, size, mtime s, mtime ns, sha256)
    quintuples on its stdin."""
    return with_python(
        root, PYTHON_DELETE, f"xargs -0 -r -x -n 25 sh -c {shlex.quote(DELETE_LOOP)} sh"
    )


def delete_input(files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> bytes:
    """Return the NUL-separated quintuples for `delete_script`."""
    fields: list[bytes] = []
    for remote in files:
        fields += [
            remote.path,
            str(remote.size).encode(),
            str(whole_seconds(remote.mtime_ns)).encode(),
            str(remote.mtime_ns).encode(),
            sha256[remote.path].encode(),
        ]
    return b"\0".join(fields) + b"\0"


def parse_deleted(output: bytes, asked: set[bytes]) -> Deleted:
    """Return what the script reports, among the names we asked for. A last record without
    its NUL (the script was cut off while writing it) is ignored: cut short, a name could
    be a prefix of another one asked for."""
    deleted = Deleted()
    for record in output.split(b"\0")[:-1]:
        name = record[1:]
        if name in asked:
            if record.startswith(b"D"):
                deleted.gone.add(name)
            elif record.startswith(b"H"):
                deleted.differs.add(name)
    deleted.differs -= deleted.gone
    return deleted
