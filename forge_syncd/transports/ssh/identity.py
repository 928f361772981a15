"""The daemon's own SSH key as a person installs it on a box: its public key line."""

from __future__ import annotations

import socket
from pathlib import Path

import paramiko


def public_key_line(identity_file: Path) -> str:
    """Given the daemon's identity file, return its public key line for authorized_keys:
    the `.pub` beside it when that is the same key, else one derived from the private key
    (commented `forge-syncd@HOST`). Return a sentence saying why when the key is unreadable."""
    try:
        key = paramiko.PKey.from_path(identity_file)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        return f"(cannot read {identity_file}: {exc})"
    blob = key.get_base64()
    try:
        for line in identity_file.with_name(identity_file.name + ".pub").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1] == blob:
                return line.strip()
    except (OSError, UnicodeDecodeError):
        pass
    return f"{key.get_name()} {blob} forge-syncd@{socket.gethostname()}"
