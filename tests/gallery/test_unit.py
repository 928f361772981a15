"""packaging/systemd/forge-sync-gallery.service is valid for systemd and hardened."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.gallery import BIN

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "forge-sync-gallery.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_gallery_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart at the installed script) and its
    offline security review rates the exposure below 2.0, as the daemon's."""
    unit = tmp_path / "forge-sync-gallery.service"
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/forge-sync-gallery " in text
    unit.write_text(
        text.replace("/usr/local/bin/forge-sync-gallery", str(BIN / "forge-sync-gallery"))
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr.strip() == ""
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    exposure = security.stdout.strip().splitlines()[-1]
    assert float(exposure.split("level for")[1].split(":")[1].split()[0]) < 2.0


def test_gallery_unit_writes_only_its_cache() -> None:
    """Read-only everywhere (ProtectSystem=strict, no ReadWritePaths), the library read-only,
    the thumbnail cache its one writable place, below syncing in priority."""
    text = UNIT.read_text()
    for directive in (
        "ProtectSystem=strict",
        "ReadOnlyPaths=/srv/forge-media",
        "CacheDirectory=forge-sync/thumbnails",
        "NoNewPrivileges=yes",
        "Nice=5",
        "MemoryMax=",
    ):
        assert directive in text
    assert "ReadWritePaths" not in text
