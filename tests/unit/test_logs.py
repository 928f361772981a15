"""Process-wide logging rules (forge_syncd.logs)."""

from __future__ import annotations

import json
import subprocess
import sys

CRASHING_THREADS = """
import threading
from forge_syncd import logs
import forge_syncd.transports.ssh.paramiko_patch  # registers the prefetch thread's expected end
logs.configure("info")

def boom():
    raise ValueError("bad data from a sink")

def prefetch():
    raise OSError("Socket is closed")

threading.Thread(target=boom, name="sink-archive").start()
threading.Thread(target=prefetch, name="Thread-7 (_prefetch_thread)").start()
"""


def test_an_exception_that_ends_a_thread_is_one_log_record_not_a_traceback() -> None:
    """A crashing thread leaves one `thread_crashed` JSON record on stderr (its name and the
    error), no traceback; paramiko's prefetch thread dying after its session closed is
    expected and stays below info."""
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_THREADS], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(r["event"], r["thread"], r["error"], r["level"]) for r in records] == [
        ("thread_crashed", "sink-archive", "ValueError: bad data from a sink", "error")
    ]
