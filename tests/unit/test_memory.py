"""glibc malloc settings (forge_syncd.service.memory) on this glibc system."""

from __future__ import annotations

import subprocess
import sys


def test_arena_cap_applies_and_trim_returns_memory() -> None:
    """In a fresh interpreter: the arena cap is accepted, and after a big allocation is
    freed, trim() leaves the resident size lower than before it."""
    probe = """
from forge_syncd.service import memory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
assert memory.limit_arenas() is True
blocks = [bytearray(4000) for _ in range(50_000)]  # ~200 MB of small heap blocks
keep = blocks[-1]
del blocks
before = rss()
memory.trim()
print(before, rss())
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert after < before - 50_000, (before, after)  # KiB: over 50 MB given back
