"""The shipped systemd files are valid for systemd itself, and the sample config is valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import BIN

PACKAGING = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (pointing ExecStart at the installed script),
    and the offline security review rates its exposure OK or better."""
    unit = tmp_path / "forge-syncd.service"
    text = (PACKAGING / "forge-syncd.service").read_text()
    assert "ExecStart=/usr/local/bin/forge-syncd " in text
    unit.write_text(text.replace("/usr/local/bin/forge-syncd", str(BIN / "forge-syncd")))
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True
    )
    exposure = security.stdout.strip().splitlines()[-1]
    assert "Overall exposure level" in exposure
    assert float(exposure.split("level for")[1].split(":")[1].split()[0]) < 2.0


def test_unit_has_what_an_operator_expects() -> None:
    """Type=notify with a watchdog, reload by SIGHUP, a dedicated user, the directories
    and the hardening the issue lists."""
    text = (PACKAGING / "forge-syncd.service").read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=forge-sync",
        "StateDirectory=forge-sync",
        "RuntimeDirectory=forge-sync",
        "LogsDirectory=forge-sync",
        "ConfigurationDirectory=forge-sync",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "ProtectHome=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "UMask=0027",
    ):
        assert directive in text, directive
    sysusers = (PACKAGING / "forge-syncd.sysusers").read_text()
    assert "u forge-sync" in sysusers
    assert "/srv/forge-media" in (PACKAGING / "forge-syncd.tmpfiles").read_text()


def test_unit_starts_after_the_clock_is_synchronised() -> None:
    """Regression (issue 23, item 12): version stamps and keep_versions trust the clock, and
    the unit started without waiting for it. It now wants and orders itself after
    time-sync.target (the verify test above checks the unit still loads)."""
    for name in ("After", "Wants"):
        values = " ".join(
            line.split("=", 1)[1]
            for line in (PACKAGING / "forge-syncd.service").read_text().splitlines()
            if line.startswith(f"{name}=")
        ).split()
        assert "time-sync.target" in values, name


def unit_directive(name: str) -> str:
    """Given a directive name, return its value in the shipped unit (the last one set)."""
    values = [
        line.split("=", 1)[1].strip()
        for line in (PACKAGING / "forge-syncd.service").read_text().splitlines()
        if line.startswith(f"{name}=")
    ]
    assert values, f"{name}= is not set"
    return values[-1]


def mebibytes(size: str) -> float:
    """Given a systemd size (1G, 768M, 512K or bytes), return it in MiB."""
    units = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024}
    if size[-1] in units:
        return float(size[:-1]) * units[size[-1]]
    return float(size) / 1024 / 1024


# Peaks measured with 50 containers syncing at once over the SFTP fallback (the unit's
# comment gives the figures): a limit must leave twice that.
MEASURED_PEAK_THREADS = 437
MEASURED_PEAK_RSS_MIB = 340


def test_unit_bounds_tasks_and_memory_above_the_measured_peaks() -> None:
    """Regression (issue 14, item 7): the unit had no TasksMax nor memory limit. Now it has
    TasksMax=, MemoryHigh= and MemoryMax=, each at least twice the measured 50-container
    peak, MemoryHigh (throttle) below MemoryMax (kill), and a comment explains the sizing."""
    tasks = int(unit_directive("TasksMax"))
    high = mebibytes(unit_directive("MemoryHigh"))
    hard = mebibytes(unit_directive("MemoryMax"))
    assert tasks >= 2 * MEASURED_PEAK_THREADS
    assert high >= 2 * MEASURED_PEAK_RSS_MIB
    assert high < hard
    text = (PACKAGING / "forge-syncd.service").read_text()
    assert f"{MEASURED_PEAK_THREADS} over the SFTP fallback" in text
    assert f"{MEASURED_PEAK_RSS_MIB} MiB over SFTP" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_exposure_stays_at_1_4_and_allows_chown_for_the_groups() -> None:
    """The unit lets the daemon give its socket and library files to their groups (chown
    is allowed back from @privileged; without capabilities it can only give its own files
    to its own groups) and still rates 1.4 in the offline security review (PrivateMounts=
    makes up for it)."""
    assert "SystemCallFilter=@chown" in (PACKAGING / "forge-syncd.service").read_text()
    security = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            str(PACKAGING / "forge-syncd.service"),
        ],
        capture_output=True,
        text=True,
    )
    exposure = security.stdout.strip().splitlines()[-1]
    assert float(exposure.split(":")[1].split()[0]) <= 1.4, exposure


@pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
    reason="needs systemd-sysusers and systemd-tmpfiles",
)
def test_sysusers_and_tmpfiles_make_the_groups_and_keep_the_key_private(tmp_path: Path) -> None:
    """Applied to an empty root: user and group forge-sync, group forge-syncctl (the control
    socket's) with the daemon as its member; /etc/forge-sync 0750 root:forge-sync; the key
    0600 owned by forge-sync (its user alone reads it, not the operators); the library
    2750 (setgid: new folders keep its group)."""
    key = tmp_path / "etc" / "forge-sync" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_text("key")
    key.chmod(0o644)
    for tool, name in (("systemd-sysusers", "sysusers"), ("systemd-tmpfiles", "tmpfiles")):
        extra = ["--create"] if tool == "systemd-tmpfiles" else []
        made = subprocess.run(
            [tool, f"--root={tmp_path}", *extra, str(PACKAGING / f"forge-syncd.{name}")],
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr
    groups = {
        line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().split()
    }
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    uid, gid = int(users["forge-sync"][2]), int(users["forge-sync"][3])
    assert gid == int(groups["forge-sync"][2])
    assert groups["forge-syncctl"][3] == "forge-sync"
    assert groups["forge-sync"][3] == ""  # nobody but the daemon's user
    folder, library = tmp_path / "etc" / "forge-sync", tmp_path / "srv" / "forge-media"
    assert (folder.stat().st_mode & 0o7777, folder.stat().st_uid, folder.stat().st_gid) == (
        0o750,
        0,
        gid,
    )
    assert (key.stat().st_mode & 0o7777, key.stat().st_uid, key.stat().st_gid) == (0o600, uid, gid)
    assert (library.stat().st_mode & 0o7777, library.stat().st_uid) == (0o2750, uid)


def test_debian_package_pins_satisfy_pyproject() -> None:
    """The exact versions the Debian package bundles (packaging/debian/requirements.txt)
    satisfy every dependency range of pyproject.toml and of its `gallery` extra (the package
    ships forge-sync-gallery): a floor raised in pyproject.toml without
    `scripts/build-deb --update-pins` fails here, before a build."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = PACKAGING.parents[1]
    pins = {}
    for line in (root / "packaging" / "debian" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    for spec in [*project["dependencies"], *project["optional-dependencies"]["gallery"]]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None, f"{requirement.name} is not pinned"
        assert requirement.specifier.contains(pinned), f"{requirement.name}=={pinned} not in {spec}"
    # psycopg[binary] installs psycopg-binary of the same version.
    assert pins["psycopg-binary"] == pins["psycopg"]
