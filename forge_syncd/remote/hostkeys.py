"""Host key checking against an OpenSSH known_hosts file. Nothing is ever trusted silently."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import paramiko

from forge_syncd.remote.errors import HostKeyError


def known_hosts_name(host: str, port: int) -> str:
    """Given a host and port, return the name OpenSSH files its key under."""
    return host if port == 22 else f"[{host}]:{port}"


def check_host_key(
    key: paramiko.PKey, host: str, port: int, known_hosts: Path, policy: str
) -> bool:
    """Given the key a server presented, accept it or raise HostKeyError.

    Return True when the key was unknown and has been learned (policy `accept-new`).
    A changed key is refused under every policy; an unknown one under `strict`.
    """
    name = known_hosts_name(host, port)
    known = _load(known_hosts)
    entries = known.lookup(name)
    if entries is not None and key.get_name() in entries:
        if entries[key.get_name()] == key:
            return False
        raise HostKeyError(
            f"host key for {name} CHANGED ({key.get_name()} {key.fingerprint}); "
            f"refusing to connect. If the container was rebuilt, remove its line from {known_hosts}"
        )
    if entries is not None and len(entries) > 0 and policy != "accept-new":
        raise HostKeyError(
            f"{name} offered a {key.get_name()} key but {known_hosts} has only "
            f"{', '.join(entries.keys())} for it"
        )
    if policy != "accept-new":
        raise HostKeyError(
            f"host key for {name} is unknown ({key.get_name()} {key.fingerprint}); "
            f"add it to {known_hosts} (ssh-keyscan -p {port} {host}) "
            "or set ssh.host_key_policy: accept-new"
        )
    _append(known_hosts, name, key)
    return True


def _load(path: Path) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except FileNotFoundError:
        pass
    except (OSError, paramiko.SSHException) as exc:
        raise HostKeyError(f"cannot read known_hosts {path}: {exc}") from exc
    return keys


def _append(path: Path, name: str, key: paramiko.PKey) -> None:
    """Append one line under an exclusive lock, so parallel first connects do not clash."""
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise HostKeyError(f"cannot learn host key into {path}: {exc}") from exc
