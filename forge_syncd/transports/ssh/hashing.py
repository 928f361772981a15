"""sha256 of remote files: one remote process for a whole batch (python3's hashlib where
the container has it: OpenSSL's sha256, ~5 times coreutils' `sha256sum` on this hardware;
else `sha256sum`), or reading over SFTP."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import paramiko

from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.shell.hashing import hash_script, parse_sha256sum_z
from forge_syncd.transports.ssh.connection import Connection, sh_command


def remote_sha256(
    connection: Connection,
    root: str,
    paths: Sequence[bytes],
    cancel: threading.Event | None = None,
) -> dict[bytes, str]:
    """Return {relative path: sha256} computed on the remote; missing files are left out.
    Raise RemoteError if it fails or `cancel` is set first (the command is closed).

    Names travel on stdin, NUL-separated, never on a command line.
    """
    if not paths:
        return {}
    result = connection.run(
        sh_command(hash_script(root)), stdin=b"\0".join(paths) + b"\0", cancel=cancel
    )
    if result.status not in (0, 1, 123):  # 1/123: some file vanished or was unreadable
        raise RemoteError(f"remote sha256sum failed (exit {result.status})")
    return parse_sha256sum_z(result.stdout, set(paths))


def sftp_sha256(
    sftp: paramiko.SFTPClient, remote_path: bytes, cancel: threading.Event | None = None
) -> str:
    """Return the sha256 of a remote file by reading it over SFTP (no remote tools needed).
    Raise OSError, or RemoteError when `cancel` is set before it is read."""
    digest = hashlib.sha256()
    with sftp.open(remote_path, "rb") as handle:
        handle.prefetch()
        while chunk := handle.read(256 * 1024):
            if cancel is not None and cancel.is_set():
                raise RemoteError("cancelled")
            digest.update(chunk)
    return digest.hexdigest()
