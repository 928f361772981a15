"""The shipped unit under a real systemd (booted in a confined systemd-nspawn container).

Runs scripts/systemd-nspawn-test when a cached Debian rootfs is there (the script builds it
with debootstrap the first time: minutes and ~300 MB, so the suite does not do that on its
own); set FORGE_NSPAWN=1 to run it anyway.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FORGE_NSPAWN_CACHE", "/var/cache/forge-syncd-nspawn"))
runnable = (
    os.geteuid() == 0
    and shutil.which("systemd-nspawn") is not None
    and Path("/sys/fs/cgroup/unified").is_dir()
    and ((CACHE / "rootfs-base").is_dir() or os.environ.get("FORGE_NSPAWN") == "1")
)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not runnable,
    reason="needs root, systemd-nspawn and a cached rootfs "
    "(run scripts/systemd-nspawn-test once, or set FORGE_NSPAWN=1)",
)
def test_unit_runs_under_real_systemd() -> None:
    """start returns after READY=1 and the unit is active; files sync under the hardening;
    STATUS= shows; reload works; a frozen daemon is killed by the watchdog and restarted;
    stop ends it cleanly."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "systemd-nspawn-test")], capture_output=True, text=True, timeout=850
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 failure(s)" in done.stdout
    assert done.stdout.count("PASS ") >= 10
