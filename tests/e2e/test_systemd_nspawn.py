"""The shipped unit under a real systemd (booted in a confined systemd-nspawn container).

Runs scripts/systemd-nspawn-test when a cached Debian rootfs is there (the script builds it
with debootstrap the first time: a minute or two and ~300 MB, so the suite does not do that
on its own); set FORGE_NSPAWN=1 to run it anyway.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "systemd-nspawn-test"
CACHE = Path(os.environ.get("FORGE_NSPAWN_CACHE", "/var/cache/forge-syncd-nspawn"))
runnable = (
    os.geteuid() == 0
    and shutil.which("systemd-nspawn") is not None
    and Path("/sys/fs/cgroup/unified").is_dir()
    and ((CACHE / "rootfs-base").is_dir() or os.environ.get("FORGE_NSPAWN") == "1")
)
needs_nspawn = pytest.mark.skipif(
    not runnable,
    reason="needs root, systemd-nspawn, a hybrid cgroup tree and a cached rootfs "
    "(run scripts/systemd-nspawn-test once, or set FORGE_NSPAWN=1)",
)

# Every check the script makes; each must report PASS.
CHECKS = (
    "systemctl enable",
    "systemd-analyze verify",
    "systemctl start returned (after READY=1)",
    "is-active: active",
    "synced 38/38 files (content and mtime) under the hardening",
    "library folder owned by forge-sync",
    "the daemon runs as forge-sync, no capabilities, NoNewPrivs, seccomp filter",
    "ProtectSystem=strict/ProtectHome",
    "a new remote file arrived on schedule (39/39 files)",
    "STATUS= shown",
    "forge-syncctl status works for an operator",
    "the control socket is 0660 forge-syncctl (control.group)",
    "the operator cannot read the SSH key",
    "library folders 2750 (setgid), files 0640 under the sandbox",
    "systemctl reload -> config_reloaded, same process",
    "a frozen daemon was killed by the watchdog and restarted",
    "systemctl stop -> inactive",
    "stopped cleanly (Result=success)",
)


def start_script() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(script: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the script; past `timeout`, SIGTERM it (its teardown runs) and fail."""
    try:
        out, _ = script.communicate(timeout=timeout)
        return out
    except subprocess.TimeoutExpired:
        script.send_signal(signal.SIGTERM)
        try:
            out, _ = script.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            out, _ = script.communicate()
        pytest.fail(f"scripts/systemd-nspawn-test took over {timeout:.0f} s:\n{out[-3000:]}")


def assert_torn_down(work: Path, cgroup: str) -> None:
    """No container, helper sshd or cgroup of this run is left, and its folder is gone."""
    assert not work.exists()
    for hierarchy in ("unified", "systemd"):
        assert not (Path("/sys/fs/cgroup") / hierarchy / cgroup).exists()
    left = subprocess.run(["pgrep", "-af", str(work)], capture_output=True, text=True).stdout
    assert left == ""


def run_identity(out: str) -> tuple[Path, str]:
    found = re.search(r"^work (\S+), cgroup (\S+)$", out, re.MULTILINE)
    assert found, out[-3000:]
    return Path(found.group(1)), found.group(2)


@pytest.mark.slow
@pytest.mark.timeout(360)
@needs_nspawn
def test_unit_runs_under_real_systemd() -> None:
    """The unit passes systemd-analyze verify; start returns after READY=1 and the unit is
    active; the Forge tree syncs byte- and mtime-exact under the hardening; the daemon runs
    as forge-sync with no capabilities, NoNewPrivs and a seccomp filter, and sees the system
    read-only; a file added later arrives; STATUS= shows; an operator in the forge-sync group
    can use forge-syncctl; reload keeps the process; a frozen daemon is killed by the
    watchdog and restarted; stop ends it cleanly; and the teardown leaves nothing behind."""
    out = finish(start_script(), timeout=300)
    assert "FAIL" not in out and out.rstrip().endswith("0 failure(s)"), out[-3000:]
    passed = [line for line in out.splitlines() if line.startswith("PASS ")]
    for check in CHECKS:
        assert any(check in line for line in passed), f"no PASS for {check!r}:\n{out[-3000:]}"
    assert_torn_down(*run_identity(out))


@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_nspawn
def test_sigterm_mid_run_tears_the_container_down() -> None:
    """A run stopped by SIGTERM while the container is up still powers it off or kills it,
    stops the helper sshd, removes its cgroups and deletes its folder."""
    script = start_script()
    assert script.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 180
    for line in script.stdout:
        lines.append(line)
        if line.startswith("container booted") or time.monotonic() > deadline:
            break
    assert any(line.startswith("container booted") for line in lines), "".join(lines)
    script.send_signal(signal.SIGTERM)
    out = "".join(lines) + finish(script, timeout=60)
    assert script.returncode == 143, out[-3000:]
    assert_torn_down(*run_identity(out))
