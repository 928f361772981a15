"""Delete remote files in batches, each only if it still has the size and mtime we decided
on and, hashed on the container at that moment, the sha256 of the library copy; report
exactly which ones are gone and which hold other bytes."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import paramiko

from forge_syncd.mtimes import NS
from forge_syncd.remote.connection import Connection, sh_command
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.hashing import sftp_sha256
from forge_syncd.remote.listing import RemoteFile

# xargs hands `sh` names as arguments (never as code); each name travels with the size and
# whole-second mtime it must still have and the sha256 its bytes must have. Each deleted
# name comes back as `D<name>\0`; one whose bytes differ as `H<name>\0`; one that changed
# size or mtime, vanished or cannot be read, not at all. -n 24 keeps quadruples together and
# well below xargs' 128 KiB command-line default even for 4 KiB names; -x fails rather than
# split one. `sha256sum < "$f"` hashes the open file: its name is never an option.
DELETE_LOOP = (
    'while [ "$#" -ge 4 ]; do f=$1; want=$2:$3; sum=$4; shift 4; '
    'if [ "$(stat -c %s:%Y -- "$f" 2>/dev/null)" = "$want" ] '
    '&& h=$(sha256sum < "$f" 2>/dev/null); then h=${h%% *}; '
    'if [ "$h" != "$sum" ]; then printf "H%s\\0" "$f"; '
    'elif rm -f -- "$f"; then printf "D%s\\0" "$f"; fi; fi; done'
)


@dataclass
class Deleted:
    """What a delete did: `gone`, the paths deleted; `differs`, the paths kept because the
    remote file's sha256 was not the library copy's (new bytes under the same size and
    mtime: the sync must fetch them)."""

    gone: set[bytes] = field(default_factory=set)
    differs: set[bytes] = field(default_factory=set)


def delete_script(root: str) -> str:
    """Return the sh script that deletes the (name, size, mtime, sha256) quadruples on its
    stdin."""
    return (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        f"exec xargs -0 -r -x -n 24 sh -c {shlex.quote(DELETE_LOOP)} sh\n"
    )


def delete_input(files: Sequence[RemoteFile], sha256: Mapping[bytes, str]) -> bytes:
    """Return the NUL-separated quadruples for `delete_script`."""
    fields: list[bytes] = []
    for remote in files:
        fields += [
            remote.path,
            str(remote.size).encode(),
            str(remote.mtime_ns // NS).encode(),
            sha256[remote.path].encode(),
        ]
    return b"\0".join(fields) + b"\0"


def parse_deleted(output: bytes, asked: set[bytes]) -> Deleted:
    """Return what the script reports, among the names we asked for."""
    deleted = Deleted()
    for record in output.split(b"\0"):
        name = record[1:]
        if name in asked:
            if record.startswith(b"D"):
                deleted.gone.add(name)
            elif record.startswith(b"H"):
                deleted.differs.add(name)
    deleted.differs -= deleted.gone
    return deleted


def delete_with_command(
    connection: Connection, root: str, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]
) -> Deleted:
    """Delete `files` with one remote command, each only while its bytes hash to
    `sha256[path]`; return what was deleted and what holds other bytes."""
    files = [remote for remote in files if remote.path in sha256]
    if not files:
        return Deleted()
    result = connection.run(sh_command(delete_script(root)), stdin=delete_input(files, sha256))
    if result.status == 3:
        raise RemoteError(f"root {root} is gone from the remote")
    return parse_deleted(result.stdout, {remote.path for remote in files})


def delete_with_sftp(
    sftp: paramiko.SFTPClient,
    root: str,
    files: Sequence[RemoteFile],
    sha256: Mapping[bytes, str],
) -> Deleted:
    """Delete `files` over SFTP, each after an lstat shows it unchanged and its bytes, read
    back over SFTP (the container has no `sha256sum`), hash to `sha256[path]`."""
    base = root.rstrip("/").encode()
    deleted = Deleted()
    for remote in files:
        path = base + b"/" + remote.path
        try:
            attr = sftp.lstat(path)
            if attr.st_size != remote.size or attr.st_mtime != remote.mtime_ns // NS:
                continue
            if remote.path not in sha256:
                continue
            if sftp_sha256(sftp, path) != sha256[remote.path]:
                deleted.differs.add(remote.path)
                continue
            sftp.remove(path)  # bytes paths reach the server as raw names
        except OSError:
            continue
        deleted.gone.add(remote.path)
    return deleted
