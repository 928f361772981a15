"""The daemon's SSH key, made once: `python -m forge_syncd.keygen PATH [--owner USER]`.

The Debian package's postinst runs it (so the package needs no openssh-client): an ed25519
key in OpenSSH format at PATH, mode 0600 and owned by USER (the daemon's user alone reads
it), and its public line at PATH.pub (0644). A key already at PATH is never replaced; a
missing PATH.pub is derived from it. The private key appears under its final name only
complete (written to a temporary name, fsynced, then linked: a crash leaves no half key, and
two concurrent runs cannot both win).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import socket
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def public_line(key: Ed25519PrivateKey, comment: str) -> str:
    """Given a private key and a comment, return its authorized_keys line (with newline)."""
    blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{blob.decode('ascii')} {comment}\n"


def _write_new(path: Path, data: bytes, mode: int, uid: int, gid: int) -> bool:
    """Given a final path, write `data` there unless something already is; return whether
    this call created it. The bytes go to a temporary name first (mode set at creation,
    owner set before any byte is written), are fsynced, then hard-linked to the final name,
    which fails if the name exists."""
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, path)
        created = True
    except FileExistsError:
        created = False
    finally:
        temp.unlink()
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return created


def ensure_key(path: Path, owner: str | None, comment: str) -> str:
    """Given the private key's path, the user who must own it (None: the caller) and the
    public line's comment, make the key unless it exists and its .pub unless that exists.
    Return what was done, for the installer's output."""
    if owner is None:
        uid, gid = os.geteuid(), os.getegid()
    else:
        entry = pwd.getpwnam(owner)
        uid, gid = entry.pw_uid, entry.pw_gid
    made = "kept the existing key"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        if _write_new(path, private, 0o600, uid, gid):
            made = "made a new ed25519 key"
    pub = path.with_name(path.name + ".pub")
    if not pub.exists():
        loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an ed25519 key; write {pub} yourself")
        with contextlib.suppress(FileExistsError):
            _write_new(pub, public_line(loaded, comment).encode(), 0o644, 0, 0)
    return f"{made}: {path} (public: {pub})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forge_syncd.keygen",
        description="Make the daemon's ed25519 SSH key unless it exists.",
    )
    parser.add_argument("path", type=Path, help="the private key's path")
    parser.add_argument("--owner", help="the user who owns it (needs root)")
    parser.add_argument(
        "--comment", default=f"forge-sync@{socket.gethostname()}", help="the public key's comment"
    )
    args = parser.parse_args(argv)
    try:
        print(ensure_key(args.path, args.owner, args.comment))
    except (OSError, KeyError, ValueError) as error:
        print(f"forge-syncd keygen: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
