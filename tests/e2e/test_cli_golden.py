"""Every forge-syncctl command as a person sees it, against a real daemon with a reachable
container (`forge-a`: files synced, one too large, a stray note) and an unreachable one
(`comfy-1`: a closed port): each run on a pseudo-terminal (160x45) and piped, compared
with its golden output in tests/e2e/golden/ once times, durations, rates, the pid, the
port and the work folder are replaced by placeholders (sizes are the files' own).

Run with FORGE_SYNCD_UPDATE_GOLDEN=1 to write the golden files again (then read the diff).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.cli import BIN
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port
from tests.support.terminal import run_in_terminal
from tests.support.trees import write_file

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("FORGE_SYNCD_UPDATE_GOLDEN"))
OLD = 1.7e9
# A zone without daylight saving: the zone's name shown is the same all year.
ENV = {"TZ": "EST5", "FORGE_SYNC_SOCKET": "", "FORGE_SYNC_CONFIG": "", "NO_COLOR": ""}


@dataclass
class Box:
    work: Path
    remote: Path
    config: Path
    port: int
    pid: int
    mismatches: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [str(BIN / "forge-syncctl"), "--config", str(self.config), *args]


CONFIG = """\
media_root: {work}/media
state_dir: {work}/state
log: {{level: info, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{user: {user}, identity_file: {key}, known_hosts: {known}, connect_timeout: 5s}}
  sync: {{settle: 0s, interval: 1h, watch: false, include: ["*.png"], max_file_size: 4KiB}}
containers:
  - name: forge-a
    kind: generic
    host: 127.0.0.1
    root: {remote}
    ssh: {{port: {port}}}
    cleanup: {{enabled: true, older_than: 720h, interval: 1h, preserve: ["keep-*"]}}
  - name: comfy-1
    kind: comfyui
    host: 127.0.0.1
    ssh: {{port: {closed}}}
    sync: {{watch: true}}
ingest:
  - {{name: catalog, type: catalog, path: {work}/state/catalog.sqlite}}
"""


def placeholders(text: str, box: Box) -> str:
    """Replace what changes from run to run; drop terminal escapes, progress bars and
    runs of spaces (column widths follow the placeholders' lengths)."""
    text = re.sub(r"\x1b\][^\x07]*\x07|\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]", "", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace(str(box.work), "<WORK>").replace(str(box.pid), "<PID>")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?", "<TIME>", text)
    text = re.sub(
        r"\b(now|(in )?\d+ (s|min|h|days?|years?)( ago)?)(?=[ ,)]|$)", "<AGO>", text, flags=re.M
    )
    text = re.sub(r"\b\d+(\.\d)?s\b|\b\d+[mhd] \d+[smh]\b", "<DUR>", text)
    text = re.sub(r"\d+(\.\d+)? (B|KiB|MiB|GiB)/s", "<RATE>", text)
    lines = [re.sub(r"(?<=\S) {2,}", " ", line).rstrip() for line in text.split("\n")]
    return "\n".join(line for line in lines if line and "━" not in line).strip() + "\n"


def check(box: Box, name: str, *args: str, pty: bool = True, piped: bool = True) -> None:
    """Run `forge-syncctl ARGS` on a terminal and piped; compare each with its golden."""
    runs = []
    if pty:
        code, output = run_in_terminal(box.argv(*args), columns=160, lines=45, env=ENV)
        runs.append(("tty", f"$ forge-syncctl {' '.join(args)}\n{output.decode()}[exit {code}]"))
    if piped:
        done = subprocess.run(
            box.argv(*args),
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **ENV},
        )
        shown = f"$ forge-syncctl {' '.join(args)}\n{done.stdout}"
        if done.stderr:
            shown += f"[stderr]\n{done.stderr}"
        runs.append(("piped", shown + f"[exit {done.returncode}]"))
    for mode, text in runs:
        got = placeholders(text, box)
        path = GOLDEN / f"{name}.{mode}.txt"
        if UPDATE:
            path.write_text(got)
        elif not path.exists() or path.read_text() != got:
            box.mismatches.append(f"--- {path.name}\n{got}")


@pytest.fixture(scope="module")
def box(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    work = tmp_path_factory.mktemp("golden")
    remote = work / "remote"
    for index in range(3):
        write_file(
            remote / f"2026-12-07/0000{index}-1234.png", b"p" * (1000 * (index + 1)), OLD + index
        )
    write_file(remote / "2026-12-07/keep-me.png", b"k" * 500, OLD + 10)
    write_file(remote / "2026-12-07/notes.md", b"notes", OLD + 11)
    write_file(remote / "big/upscaled.png", b"b" * 5000, OLD + 12)
    config = work / "forge-sync.yaml"
    config.write_text(
        CONFIG.format(
            work=work,
            remote=remote,
            user=sshd.user,
            key=sshd.client_key,
            known=sshd.known_hosts,
            port=sshd.port,
            closed=free_port(),
        )
    )
    process = start_daemon(config)
    result = Box(work, remote, config, sshd.port, process.pid)
    try:
        wait_until((work / "run" / "control.sock").exists, what="the control socket")
        wait_until(lambda: settled(result), timeout=60, what="both first syncs and the catalog")
        yield result
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


def settled(box: Box) -> bool:
    """Both containers have a first sync, and the catalog has every event."""
    done = subprocess.run(box.argv("status", "--json"), capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return False
    status = json.loads(done.stdout)
    synced = all(c["last_sync"] for c in status["containers"])
    return synced and all(not s["pending"] for s in status["sinks"])


def test_every_command_reads_as_its_golden_output(box: Box) -> None:
    """Regression (issue 25): status, history, find, cleanup --dry-run, sync --wait,
    drain, pause/resume and the errors read as the golden files show — on a terminal
    (colour stripped here; piped rows never cut to 80 columns, no ellipses, no wrapped
    cells), with an AT RISK column, truthful WATCH, binary units, local times with the zone,
    a TRIGGER column, totals last, hints, did-you-mean."""
    check(box, "status", "status")
    check(box, "status-name", "status", "forge-a")
    check(box, "history", "history", "forge-a")
    check(box, "find", "find", "--container", "forge-a")
    check(box, "cleanup-dry-run", "cleanup", "--dry-run", "forge-a")
    write_file(box.remote / "2026-12-07/00003-1234.png", b"n" * 2048, OLD + 3)
    check(box, "sync-wait", "sync", "forge-a", "--wait", piped=False)
    write_file(box.remote / "2026-12-07/00004-1234.png", b"n" * 2048, OLD + 4)
    check(box, "sync-wait", "sync", "forge-a", "--wait", pty=False)
    check(box, "drain", "drain", "forge-a")
    check(box, "pause", "pause", "forge-a", piped=False)
    check(box, "resume", "resume", "forge-a", piped=False)
    check(box, "history-after", "history", "forge-a", "--limit", "4")
    check(box, "unknown-container", "status", "forge-b")
    check(box, "unknown-command", "stauts")
    assert not box.mismatches, "\n".join(box.mismatches)


def test_watch_says_what_it_waits_for(box: Box) -> None:
    """Regression (issue 25, item 9): `watch` was blank when idle. It says what it waits
    for (piped: when it becomes idle), and a line as each job ends (and starts, when a
    tick sees it running)."""
    argv = box.argv("watch")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    try:
        time.sleep(2)
        write_file(box.remote / "2026-12-07/00005-1234.png", b"w" * 3000, OLD + 5)
        subprocess.run(box.argv("sync", "forge-a", "--wait"), capture_output=True, timeout=60)
        time.sleep(2)
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    lines = [" ".join(placeholders(line, box).split()) for line in out.splitlines()]
    assert lines[0] == ("waiting for a run: 1 container idle, 1 unreachable, next sync <AGO>"), (
        lines
    )
    assert "forge-a sync done: 1 file, 2.9 KiB" in lines
    assert lines[-1].startswith("waiting for a run: "), lines
