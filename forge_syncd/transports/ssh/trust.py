"""Trusting a host key a person confirmed (`forge-syncctl add`): what known_hosts says of
the host now, and writing the key into it atomically.

The file is rewritten whole (temporary file, fsync, rename, fsync of the folder) under the
same lock `hostkeys.locked` gives `accept-new`, so neither loses the other's line. A new
line follows the file's style: a hashed host name (`|1|salt|hash`, OpenSSH's
HashKnownHosts) when the file already hashes its names, plain otherwise; non-22 ports
in OpenSSH's `[host]:port` form.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import paramiko

from forge_syncd.atomicfile import write_atomically
from forge_syncd.remote.errors import HostKeyError
from forge_syncd.transports.ssh.hostkeys import (
    fingerprint,
    known_hosts_name,
    load_known_hosts,
    locked,
)

NEW_FILE_MODE = 0o644


@dataclass(frozen=True)
class KnownKey:
    """A key known_hosts holds for a host: its type and fingerprint."""

    type: str
    fingerprint: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "fingerprint": self.fingerprint}


def known_keys(path: Path, host: str, port: int) -> list[KnownKey]:
    """Given a known_hosts file and a host, return the keys the file holds for it (none
    when the file does not exist). Raise HostKeyError if it cannot be read."""
    entries = load_known_hosts(path).lookup(known_hosts_name(host, port))
    if not entries:
        return []
    return [KnownKey(kind, fingerprint(entries[kind])) for kind in entries]


def trust_host_key(path: Path, host: str, port: int, key: paramiko.PKey) -> bool:
    """Given a known_hosts file, a host and the key a person confirmed for it, make it the
    host's only key: lines naming only that host are replaced, others kept as written.
    Return False when the file already held exactly that key (nothing written). Raise
    HostKeyError when the file cannot be written, or when a line to replace also names
    other hosts (left for a person to edit)."""
    name = known_hosts_name(host, port)
    try:
        with locked(path) as handle:
            entries = load_known_hosts(path).lookup(name)
            if entries and list(entries) == [key.get_name()] and entries[key.get_name()] == key:
                return False
            handle.seek(0)
            text = handle.read()
            kept = _without(text, name, path)
            hashed = _hashes_names(text)
            shown = paramiko.HostKeys.hash_host(name) if hashed else name
            line = f"{shown} {key.get_name()} {key.get_base64()}\n"
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode) or NEW_FILE_MODE
            body = "".join(kept)
            if body and not body.endswith("\n"):
                body += "\n"
            write_atomically(path, (body + line).encode(), mode)
    except OSError as exc:
        raise HostKeyError(f"cannot write host key into {path}: {exc.strerror or exc}") from exc
    return True


def _without(text: str, name: str, path: Path) -> list[str]:
    """Given known_hosts text, return its lines without those for `name` alone. Raise
    HostKeyError for a line naming `name` among other hosts."""
    kept: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", "@")):
            kept.append(line)
            continue
        names = fields[0].split(",")
        matching = [n for n in names if _names(n, name)]
        if not matching:
            kept.append(line)
        elif len(names) > 1:
            raise HostKeyError(
                f"{path} line {number} names {name} together with other hosts; edit it by"
                " hand (the key offered differs from the one it holds)"
            )
    return kept


def _names(field: str, name: str) -> bool:
    """Whether one host field of a known_hosts line (plain or hashed) is `name`."""
    if field.startswith("|1|"):
        try:
            return paramiko.HostKeys.hash_host(name, field) == field
        except (ValueError, AssertionError, IndexError):
            return False  # not a hash paramiko can read: not ours to judge
    return field == name


def _hashes_names(text: str) -> bool:
    """Whether a known_hosts file hashes its host names (its first host line does)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith(("#", "@")):
            return fields[0].startswith("|1|")
    return False
