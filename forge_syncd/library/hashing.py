"""The sha256 of a library file."""

from __future__ import annotations

import hashlib


def file_sha256(path: bytes) -> str | None:
    """Return the sha256 of a local file, or None if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
