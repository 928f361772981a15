"""Host key checking against an OpenSSH known_hosts file. Nothing is ever trusted silently.

`accept-new` learns a key only for a host it knows no key of: once any key of a host is
known, a key of another type is refused under every policy. This is stricter than OpenSSH,
whose accept-new learns a key of a new type for a host it already knows: a box that stops
offering the key type we pinned is either rebuilt or impersonated, and a rented box is not
trusted on its word. Like OpenSSH, the handshake asks first for the key types known for the
host (`prefer_known_types`), so a server with several host keys shows one we can check.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeAlias

import paramiko

from forge_syncd.remote.errors import HostKeyError

# A key a host presents (as the layers above paramiko name its type).
HostKey: TypeAlias = paramiko.PKey


def known_hosts_name(host: str, port: int) -> str:
    """Given a host and port, return the name OpenSSH files its key under."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """Given a key, return its SHA256 fingerprint as OpenSSH prints it (`ssh-keygen -l`):
    `SHA256:` and the unpadded base64 of the digest of the key blob."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def check_host_key(
    key: paramiko.PKey, host: str, port: int, known_hosts: Path, policy: str
) -> bool:
    """Given the key a server presented, accept it or raise HostKeyError.

    Return True when the key was unknown and has been learned (policy `accept-new`).
    A changed key, or a key of another type than those known for the host, is refused
    under every policy; an unknown host's key under `strict`.
    """
    name = known_hosts_name(host, port)
    if _is_known(load_known_hosts(known_hosts).lookup(name), name, key, known_hosts):
        return False
    if policy != "accept-new":
        raise HostKeyError(
            f"host key for {name} is unknown ({key.get_name()} {key.fingerprint}); "
            f"add it to {known_hosts} (ssh-keyscan -p {port} {host}) "
            "or set ssh.host_key_policy: accept-new"
        )
    return _learn(known_hosts, name, key)


def _is_known(entries: Any, name: str, key: paramiko.PKey, known_hosts: Path) -> bool:
    """Given the known_hosts entries of a host (paramiko's lookup result, None when there
    are none), return True when `key` is one of them, False when the host has no key at
    all; raise HostKeyError when it has other keys (changed, or of another type)."""
    if not entries:
        return False
    kind = key.get_name()
    if kind in entries and entries[kind] == key:
        return True
    if kind in entries:
        raise HostKeyError(
            f"host key for {name} CHANGED ({kind} {key.fingerprint}); "
            f"refusing to connect. If the container was rebuilt, remove its line from {known_hosts}"
        )
    raise HostKeyError(
        f"{name} offered a {kind} key ({key.fingerprint}) but {known_hosts} has only "
        f"{', '.join(entries.keys())} for it; refused under every policy (accept-new learns "
        "keys only for hosts with no known key). If the container was rebuilt, remove its "
        f"line from {known_hosts}"
    )


def known_key_types(host: str, port: int, known_hosts: Path) -> list[str]:
    """Given a host, port and known_hosts file, return the key types known for that host
    (empty when none is, or the file cannot be read: the check after the handshake says why)."""
    try:
        entries = load_known_hosts(known_hosts).lookup(known_hosts_name(host, port))
    except HostKeyError:
        return []
    return list(entries.keys()) if entries else []


# known_hosts names an RSA key `ssh-rsa`; the handshake signs with one of these algorithms.
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


def prefer_known_types(offered: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
    """Given the host key algorithms a client offers (in preference order) and the key
    types known for the host, return the algorithms with those of known types first, as
    OpenSSH orders them: a server with several host keys then shows the one we can check."""
    wanted = {alg for kind in known for alg in (RSA_ALGORITHMS if kind == "ssh-rsa" else (kind,))}
    return (*(a for a in offered if a in wanted), *(a for a in offered if a not in wanted))


def load_known_hosts(path: Path) -> paramiko.HostKeys:
    """Given a known_hosts path, return its keys (none when the file does not exist).
    Raise HostKeyError when it cannot be read."""
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except FileNotFoundError:
        pass
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"cannot read known_hosts {path}: {exc}") from exc
    return keys


@contextlib.contextmanager
def locked(path: Path) -> Iterator[IO[str]]:
    """Open `path` (created if missing, 0644) for appending and hold an exclusive lock on
    it; yield the file. The file replaced meanwhile (`trust.trust_host_key` renames a new
    one in) is opened again, so the lock is always on the file the path names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        handle = os.fdopen(fd, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                yield handle
                return
        finally:
            handle.close()


def _learn(path: Path, name: str, key: paramiko.PKey) -> bool:
    """Append `key` for `name` under an exclusive lock, checking again under the lock: a
    parallel connect (another container on the same box, or another process) may have
    learned a key of that host meanwhile. Return True when appended, False when that same
    key was learned meanwhile; raise HostKeyError if another key was."""
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    try:
        with locked(path) as handle:
            if _is_known(load_known_hosts(path).lookup(name), name, key, path):
                return False
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise HostKeyError(f"cannot learn host key into {path}: {exc}") from exc
    return True
