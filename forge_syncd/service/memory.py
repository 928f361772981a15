"""glibc malloc settings for a long-running daemon with a thread per connection.

glibc gives threads their own malloc arenas (up to 8 per core), and memory freed in one is
not returned to the system: with dozens of connection threads the daemon's resident size
kept what its largest run needed. Measured with a 100,000-file container: peak RSS 154 MB
with the default, 140 MB with two arenas; and 86 MB held after a run, 70 MB once trimmed.
Elsewhere (musl, macOS) these are no-ops.
"""

from __future__ import annotations

import contextlib
import ctypes

M_ARENA_MAX = -8  # mallopt(3)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)  # this process's symbols, libc's among them
    except OSError:
        return None


def limit_arenas(count: int = 2) -> bool:
    """Cap glibc's malloc arenas (call early, before threads start); True if it applied."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(count)))


def trim() -> None:
    """Return freed heap memory to the system (after a run that needed a lot)."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.malloc_trim(ctypes.c_size_t(0))
