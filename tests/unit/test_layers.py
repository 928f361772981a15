"""The package's layers, checked from the code itself: the rules a run applies speak of a
container's files in the package's own words (`forge_syncd/remote/`), never through the SSH
library, so they load, and are tested, without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The pure rules: what to fetch, when a plan may be reused, when a fetched file is verified,
# when a reported file is complete, what may be purged, whether a library copy is safe.
RULES = (
    "forge_syncd.cleanup.rules",
    "forge_syncd.sync.plan",
    "forge_syncd.sync.memo",
    "forge_syncd.sync.verify",
    "forge_syncd.sync.changes",
    "forge_syncd.safety",
)


@pytest.mark.parametrize("module", RULES)
def test_the_rules_import_without_paramiko(module: str) -> None:
    """Importing a rule module, in a fresh interpreter, loads no paramiko: the rules see a
    container through the transport-neutral types and interface only."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0]"
            " == 'paramiko')[:5])",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert loaded.stdout.strip() == "[]", f"{module} loads paramiko: {loaded.stdout.strip()}"
