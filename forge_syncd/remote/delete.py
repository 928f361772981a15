"""Delete remote files in batches, each only if it still has the size and mtime we decided
on, and report exactly which ones are gone."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import paramiko

from forge_syncd.remote.connection import Connection, sh_command
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.listing import RemoteFile

# xargs hands `sh` names as arguments (never as code); each name travels with the size and
# whole-second mtime it must still have. -n 24 keeps triples together and well below xargs'
# 128 KiB command-line default even for 4 KiB names; -x fails rather than split a triple.
DELETE_LOOP = (
    'while [ "$#" -ge 3 ]; do f=$1; want=$2:$3; shift 3; '
    'if [ "$(stat -c %s:%Y -- "$f" 2>/dev/null)" = "$want" ] && rm -f -- "$f"; '
    'then printf "%s\\0" "$f"; fi; done'
)


def delete_script(root: str) -> str:
    """Return the sh script that deletes the (name, size, mtime) triples on its stdin."""
    return (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        f"exec xargs -0 -r -x -n 24 sh -c {shlex.quote(DELETE_LOOP)} sh\n"
    )


def delete_input(files: Sequence[RemoteFile]) -> bytes:
    """Return the NUL-separated triples for `delete_script`."""
    fields: list[bytes] = []
    for remote in files:
        fields += [remote.path, str(remote.size).encode(), str(remote.mtime_ns // 10**9).encode()]
    return b"\0".join(fields) + b"\0"


def parse_deleted(output: bytes, asked: set[bytes]) -> set[bytes]:
    """Return the names the script reports deleted, among those we asked for."""
    return {name for name in output.split(b"\0") if name in asked}


def delete_with_command(
    connection: Connection, root: str, files: Sequence[RemoteFile]
) -> set[bytes]:
    """Delete `files` with one remote command; return the relative paths really deleted."""
    if not files:
        return set()
    result = connection.run(sh_command(delete_script(root)), stdin=delete_input(files))
    if result.status == 3:
        raise RemoteError(f"root {root} is gone from the remote")
    return parse_deleted(result.stdout, {remote.path for remote in files})


def delete_with_sftp(
    sftp: paramiko.SFTPClient, root: str, files: Sequence[RemoteFile]
) -> set[bytes]:
    """Delete `files` over SFTP, each after an lstat shows it unchanged; return the deleted."""
    base = root.rstrip("/").encode()
    deleted: set[bytes] = set()
    for remote in files:
        path = base + b"/" + remote.path
        try:
            attr = sftp.lstat(path)
            if attr.st_size != remote.size or attr.st_mtime != remote.mtime_ns // 10**9:
                continue
            sftp.remove(path)  # bytes paths reach the server as raw names
        except OSError:
            continue
        deleted.add(remote.path)
    return deleted
