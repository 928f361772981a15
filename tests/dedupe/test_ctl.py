"""`forge-syncctl dedupe` end to end: the installed forge-syncctl asks the real daemon, which
shares the copies a library made with `dedupe: off` holds (on XFS) and answers what it
saved; `--dry-run` first changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from forge_syncd.control.client import ControlClient, DaemonUnreachable
from tests.support import reflink
from tests.support.cli import BIN, forge_syncd
from tests.support.daemon import wait_until
from tests.support.faults import spawn_daemon
from tests.support.trees import tree_files, write_file

OLD = 1_700_000_000.0
MIB = 1024 * 1024


def config(work: Path, library: Path, source: Path, dedupe: str) -> Path:
    path = work / "forge-sync.yaml"
    path.write_text(
        f"""\
media_root: {library}/media
state_dir: {library}/state
log: {{level: info, file: {work}/forge-syncd.jsonl}}
control: {{socket: {work}/control.sock}}
metrics: {{listen: null}}
library: {{dedupe: {dedupe}}}
containers:
  - {{name: nas, transport: local, kind: generic, root: {source},
      sync: {{settle: 0s, interval: 1h, watch: false}}}}
"""
    )
    return path


def idle(socket: Path) -> bool:
    try:
        with ControlClient(socket) as client:
            (container,) = client.call("status", {}, timeout=30)["containers"]
    except (OSError, DaemonUnreachable):
        return False
    return bool(container["state"] == "idle" and container["last_sync"] is not None)


def ctl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(socket), "dedupe", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_forge_syncctl_dedupe_shares_a_library_made_before(
    tmp_path: Path, reflink_dir: Path
) -> None:
    """A library synced with `dedupe: off` holds two copies of the same bytes; the daemon
    (now `auto`) answers `dedupe --dry-run` with what it would save and changes nothing,
    then `dedupe` shares them (reflinks) and says so; the bytes and mtimes stay."""
    source = tmp_path / "outputs"
    data = os.urandom(MIB)
    for name in ("a.png", "day 2/b.png"):
        write_file(source / name, data, OLD)
    write_file(source / "c.png", os.urandom(MIB), OLD)
    once = forge_syncd("--once", "--config", str(config(tmp_path, reflink_dir, source, "off")))
    assert once.returncode == 0, once.stderr
    library = reflink_dir / "media" / "nas"
    before = tree_files(library)
    assert not reflink.share_extents(library / "a.png", library / "day 2" / "b.png")
    socket = tmp_path / "control.sock"
    daemon = spawn_daemon(config(tmp_path, reflink_dir, source, "auto"), tmp_path / "stderr")
    try:
        wait_until(lambda: idle(socket), 60, "the daemon's first sync")
        dry = ctl(socket, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would share 1 file(s), saving 1.0 MiB (auto)" in dry.stdout
        assert tree_files(library) == before
        done = ctl(socket)
        assert done.returncode == 0, done.stderr
        assert "shared 1 file(s), saving 1.0 MiB (auto)" in done.stdout
        assert reflink.share_extents(library / "a.png", library / "day 2" / "b.png")
        assert tree_files(library) == before
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()
