"""The package's layers, checked from the code itself: the rules a run applies speak of a
container's files in the package's own words (`forge_syncd/remote/`), never through the SSH
library, so they load, and are tested, without it; and the SSH library is the SSH
transport's alone (`forge_syncd/transports/ssh/`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The pure rules: what to fetch, when a plan may be reused, when a fetched file is verified,
# when a burst ends, when a reported file is complete, what may be purged, whether a library
# copy is safe.
RULES = (
    "forge_syncd.cleanup.rules",
    "forge_syncd.sync.plan",
    "forge_syncd.sync.memo",
    "forge_syncd.sync.verify",
    "forge_syncd.live.changes",
    "forge_syncd.live.burst",
    "forge_syncd.library.safety",
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


def paramiko_uses(path: Path) -> list[str]:
    """Return where the module at `path` imports paramiko or names its SFTP prefetch thread
    (`line N: ...`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "_prefetch_thread" in node.value:
                found.append(f"line {node.lineno}: names paramiko's _prefetch_thread")
            continue
        else:
            continue
        found += [
            f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] == "paramiko"
        ]
    return found


def test_paramiko_only_under_transports_ssh() -> None:
    """No module outside `forge_syncd/transports/ssh/` imports paramiko or knows the name of
    its SFTP prefetch thread: the SSH library is one transport's business, and every other
    layer (discovery, logging, onboarding) reaches it through that transport's modules."""
    package = ROOT / "forge_syncd"
    ssh = package / "transports" / "ssh"
    offending = {
        str(path.relative_to(ROOT)): uses
        for path in sorted(package.rglob("*.py"))
        if ssh not in path.parents and (uses := paramiko_uses(path))
    }
    assert offending == {}
