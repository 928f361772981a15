"""forge-syncd under a real systemd (a Debian 12 booted in a confined systemd-nspawn
container): from source, and as the Debian package.

Runs scripts/systemd-nspawn-test, which makes its cached Debian rootfs with debootstrap the
first time (about a minute and ~400 MB in /var/cache/forge-syncd-nspawn). The package test
installs $FORGE_DEB (.ci/run builds it) or builds one with scripts/build-deb. Where they
cannot run (not root, no systemd-nspawn, no hybrid cgroup tree) they skip, except in CI
(CI=true), where a skip would hide a broken systemd integration: there they fail.
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
BUILD_DEB = ROOT / "scripts" / "build-deb"
MISSING = [
    why
    for why, ok in (
        ("root", os.geteuid() == 0),
        ("systemd-nspawn (apt install systemd-container)", shutil.which("systemd-nspawn")),
        ("debootstrap", shutil.which("debootstrap")),
        ("a hybrid cgroup tree (/sys/fs/cgroup/unified)", Path("/sys/fs/cgroup/unified").is_dir()),
    )
    if not ok
]


@pytest.fixture
def nspawn() -> None:
    """Skip where systemd-nspawn cannot run; in CI that is a failure, never a skip."""
    if not MISSING:
        return
    reason = "needs " + ", ".join(MISSING)
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{reason}: in CI the systemd tests must run (scripts/bootstrap.sh installs them)"
        )
    pytest.skip(reason)


@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Debian package to install: $FORGE_DEB, else one built now by scripts/build-deb."""
    given = os.environ.get("FORGE_DEB")
    if given:
        assert Path(given).is_file(), f"FORGE_DEB={given} does not exist"
        return Path(given)
    out = tmp_path_factory.mktemp("deb")
    build = subprocess.run(
        [str(BUILD_DEB), "--out", str(out)], capture_output=True, text=True, timeout=900
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (deb,) = out.glob("forge-syncd_*.deb")
    return deb


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


# Every check of the package mode; each must report PASS.
PACKAGE_CHECKS = (
    "apt install ./forge-syncd_",
    "active and READY",
    "zero containers: STATUS=no containers configured: forge-syncctl add NAME ssh://user@host:port",
    "enabled at boot",
    "and forge-syncctl on PATH, with man pages",
    "Grafana dashboard and alert rules in /usr/share/forge-syncd",
    "systemd-analyze verify: the packaged unit is clean",
    "systemd-analyze security",
    "the key: /etc/forge-sync/id_ed25519 600 forge-sync:forge-sync",
    "/etc/forge-sync.yaml is a conffile",
    "the daemon runs as forge-sync",
    "an operator (group forge-syncctl) runs forge-syncctl status",
    "the operator cannot read the key",
    "add refuses a host key that does not match --fingerprint",
    "a box that refuses the key: exit 1, the public key line printed, nothing written",
    "forge-syncctl add box1",
    "the Forge tree detected",
    "first sync landed",
    "forge-sync-gallery.service installed, disabled and stopped; /usr/bin/forge-sync-gallery",
    "systemctl enable --now forge-sync-gallery: answering on 127.0.0.1:9722",
    "reinstall to",
    "upgrade to",
    "apt remove: stopped, the program gone; config, key, drop-in, manifest and library kept",
    "apt purge: config and state gone, the library kept",
    "apt purge with media_root inside /var/lib/forge-sync: that folder kept",
)


def start_script(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), *args],
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


def assert_all_passed(out: str, checks: tuple[str, ...]) -> None:
    """No FAIL line, the script's own verdict is 0 failures, and every check has a PASS."""
    assert "FAIL" not in out and out.rstrip().endswith("0 failure(s)"), out[-3000:]
    passed = [line for line in out.splitlines() if line.startswith("PASS ")]
    for check in checks:
        assert any(check in line for line in passed), f"no PASS for {check!r}:\n{out[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(480)
@pytest.mark.usefixtures("nspawn")
def test_unit_runs_under_real_systemd() -> None:
    """The unit passes systemd-analyze verify; start returns after READY=1 and the unit is
    active; the Forge tree syncs byte- and mtime-exact under the hardening; the daemon runs
    as forge-sync with no capabilities, NoNewPrivs and a seccomp filter, and sees the system
    read-only; a file added later arrives; STATUS= shows; an operator in the forge-sync group
    can use forge-syncctl; reload keeps the process; a frozen daemon is killed by the
    watchdog and restarted; stop ends it cleanly; and the teardown leaves nothing behind."""
    out = finish(start_script(), timeout=420)
    assert_all_passed(out, CHECKS)
    assert_torn_down(*run_identity(out))


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.usefixtures("nspawn")
def test_debian_package_on_a_fresh_debian(package: Path) -> None:
    """`apt install ./forge-syncd_*.deb` on a fresh Debian 12 (debootstrap with systemd
    only) brings its Depends from Debian and leaves the service enabled, active and READY
    with zero containers (STATUS says how to add one); the programs, man pages, dashboard
    and rules are installed, the unit verifies and scores no worse than 1.4; the key is
    0600 forge-sync and no conffile, the config is; an operator in group forge-syncctl uses
    forge-syncctl but cannot read the key, and adds the helper sshd as a box: a wrong
    fingerprint is refused, a refused key prints the line for authorized_keys and writes
    nothing, then the Forge tree is detected and the first sync lands byte-identical; the
    gallery's unit is installed disabled, and once enabled (with a catalog sink) answers on
    127.0.0.1:9722 with the synced files and their thumbnails, cached in
    /var/cache/forge-sync/thumbnails; a reinstall and an upgrade restart the service and keep config, drop-in, key, manifest
    and library; apt remove keeps all of those; apt purge removes config and state but
    keeps the library, even one configured inside the state folder; the teardown leaves
    nothing behind."""
    out = finish(start_script("--deb", str(package)), timeout=600)
    assert_all_passed(out, PACKAGE_CHECKS)
    assert_torn_down(*run_identity(out))


@pytest.mark.slow
@pytest.mark.timeout(360)
@pytest.mark.usefixtures("nspawn")
def test_sigterm_mid_run_tears_the_container_down() -> None:
    """A run stopped by SIGTERM while the container is up still powers it off or kills it,
    stops the helper sshd, removes its cgroups and deletes its folder."""
    script = start_script()
    assert script.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 300
    for line in script.stdout:
        lines.append(line)
        if line.startswith("container booted") or time.monotonic() > deadline:
            break
    assert any(line.startswith("container booted") for line in lines), "".join(lines)
    script.send_signal(signal.SIGTERM)
    out = "".join(lines) + finish(script, timeout=60)
    assert script.returncode == 143, out[-3000:]
    assert_torn_down(*run_identity(out))
