"""Delete remote files in batches, each only if it still has the size and mtime we decided
on and, hashed on the container at that moment, the sha256 of the library copy; report
exactly which ones are gone and which hold other bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import paramiko
from paramiko.sftp_attr import SFTPAttributes

from forge_syncd.mtimes import whole_seconds
from forge_syncd.remote.errors import RemoteError
from forge_syncd.remote.types import Deleted, RemoteFile
from forge_syncd.transports.shell.delete import delete_input, delete_script, parse_deleted
from forge_syncd.transports.ssh.connection import Connection, sh_command
from forge_syncd.transports.ssh.hashing import sftp_sha256

HASH_FLOOR_BPS = 10_000_000  # the slowest a container may hash one file without failing


def delete_with_command(
    connection: Connection, root: str, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]
) -> Deleted:
    """Delete `files` with one remote command, each only while its bytes hash to
    `sha256[path]`; return what was deleted and what holds other bytes."""
    files = [remote for remote in files if remote.path in sha256]
    if not files:
        return Deleted()
    # Each file is hashed before anything is printed for it: a big file on a slow disk
    # must not look like a stalled command (at least 10 MB/s, never under the default).
    slowest = max(remote.size for remote in files) / HASH_FLOOR_BPS
    result = connection.run(
        sh_command(delete_script(root)),
        stdin=delete_input(files, sha256),
        idle_timeout=max(connection.idle_timeout_s, slowest),
    )
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
    back over SFTP (the container has no way to hash), hash to `sha256[path]`, and a second
    lstat after the read still shows the listed size and mtime. SFTP knows no inode and
    only whole seconds: a file renamed over the name during the read with the same size and
    an mtime in the same second would go unseen — only a drain's purge (no age limit) can
    meet one; cleanup purges files older than `older_than`, whose replacement would carry
    a new mtime."""
    base = root.rstrip("/").encode()
    deleted = Deleted()
    for remote in files:
        path = base + b"/" + remote.path
        if remote.path not in sha256:
            continue
        try:
            if not _unchanged(sftp.lstat(path), remote):
                continue
            if sftp_sha256(sftp, path) != sha256[remote.path]:
                deleted.differs.add(remote.path)
                continue
            if not _unchanged(sftp.lstat(path), remote):
                continue
            sftp.remove(path)  # bytes paths reach the server as raw names
        except OSError:
            continue
        deleted.gone.add(remote.path)
    return deleted


def _unchanged(attr: SFTPAttributes, remote: RemoteFile) -> bool:
    """Return whether SFTP attributes show the listed size and (whole-second) mtime."""
    return attr.st_size == remote.size and attr.st_mtime == whole_seconds(remote.mtime_ns)
