"""Run the installed commands as subprocesses, with configs written for a test sshd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.sshd import SshdServer

BIN = Path(sys.executable).parent


def write_config(
    work: Path, sshd: SshdServer, remote: Path, kind: str = "generic", **sync: Any
) -> Path:
    """Write a config with one container `forge-a` reaching `remote`; return its path."""
    sync.setdefault("settle", "0s")
    sync_yaml = ", ".join(f"{key}: {value}" for key, value in sync.items())
    text = f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{user: {sshd.user}, identity_file: {sshd.client_key}, known_hosts: {sshd.known_hosts},
         connect_timeout: 5s}}
  sync: {{{sync_yaml}}}
containers:
  - name: forge-a
    kind: {kind}
    host: 127.0.0.1
    root: {remote}
    ssh: {{port: {sshd.port}}}
"""
    path = work / "forge-sync.yaml"
    path.write_text(text)
    return path


def forge_syncd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed forge-syncd to completion; return its result (text)."""
    return subprocess.run(
        [str(BIN / "forge-syncd"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "FORGE_SYNC_CONFIG": ""},
    )
