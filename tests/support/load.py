"""Many containers against a few private sshd servers, and what the daemon costs meanwhile.

Used by tests/test_load.py (CI-sized) and scripts/soak (minutes to hours). `LoadRig` starts
the sshd servers, fills one remote root per container and writes the daemon's config;
`sample(pid)` reads RSS, peak RSS, open file descriptors, threads and CPU ticks of a process
from /proc (Linux only).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forge_syncd.control.client import ControlClient
from tests.support.sshd import SshdServer
from tests.support.trees import fake_png, tree_files, write_file

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One look at a process: memory in KiB, CPU in clock ticks (user + system)."""

    at: float  # time.monotonic()
    rss_kib: int
    hwm_kib: int  # peak RSS so far (VmHWM)
    fds: int
    threads: int
    cpu_ticks: int

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024

    @property
    def hwm_mib(self) -> float:
        return self.hwm_kib / 1024


def sample(pid: int) -> ProcSample:
    """Given a live pid, return its ProcSample (raise FileNotFoundError if it is gone)."""
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    # /proc/<pid>/stat: the command name may hold spaces; fields after ')' are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return ProcSample(
        at=time.monotonic(),
        rss_kib=int(status["VmRSS"].split()[0]),
        hwm_kib=int(status["VmHWM"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        cpu_ticks=utime + stime,
    )


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """Return the CPU the process used between two samples, in % of one core."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    return 100.0 * (after.cpu_ticks - before.cpu_ticks) / CLOCK_TICKS / elapsed


@dataclass
class Remote:
    """One container: its name, its remote root and the sshd that serves it."""

    name: str
    root: Path
    server: SshdServer
    added: int = 0


@dataclass
class LoadRig:
    """`containers` containers spread round-robin over `servers` private sshd instances,
    each with its own remote root holding `files` generated PNGs."""

    work: Path
    containers: int = 50
    servers: int = 4
    files: int = 30
    seed: int = 9
    sshds: list[SshdServer] = field(default_factory=list)
    remotes: list[Remote] = field(default_factory=list)

    @property
    def media(self) -> Path:
        return self.work / "media"

    @property
    def socket(self) -> Path:
        return self.work / "run" / "control.sock"

    @property
    def log(self) -> Path:
        return self.work / "log" / "forge-syncd.jsonl"

    def start(self) -> LoadRig:
        """Start the sshd servers and fill the remote roots. Return self."""
        rng = random.Random(self.seed)
        for index in range(self.servers):
            self.sshds.append(SshdServer(self.work / f"sshd-{index}").start())
        for index in range(self.containers):
            name = f"c{index:03d}"
            remote = Remote(name, self.work / "remotes" / name, self.sshds[index % self.servers])
            for n in range(self.files):
                folder = remote.root / f"2026-11-{20 + n % 5:02d}"
                write_file(folder / f"{n:05d}.png", fake_png(rng, rng.randrange(500, 8000)), 1.7e9)
            self.remotes.append(remote)
        return self

    def stop(self) -> None:
        for server in self.sshds:
            server.stop()

    def write_config(self, interval: str = "1h", level: str = "info") -> Path:
        """Write the daemon's config for every container; return its path."""
        lines = [
            f"media_root: {self.media}",
            f"state_dir: {self.work / 'state'}",
            f"log: {{level: {level}, file: {self.log}}}",
            f"control: {{socket: {self.socket}}}",
            "metrics: {listen: null}",
            "defaults:",
            f"  sync: {{interval: {interval}, settle: 0s}}",
            "containers:",
        ]
        for remote in self.remotes:
            server = remote.server
            lines.append(
                f"  - {{name: {remote.name}, kind: generic, host: 127.0.0.1, root: {remote.root},"
                f" ssh: {{user: {server.user}, port: {server.port},"
                f" identity_file: {server.client_key}, known_hosts: {server.known_hosts},"
                " connect_timeout: 30s}}"
            )
        path = self.work / "forge-sync.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def add_files(self, remote: Remote, count: int, rng: random.Random) -> None:
        """Write `count` new PNGs into a container's remote root (as a generator would)."""
        for _ in range(count):
            remote.added += 1
            write_file(
                remote.root / "new" / f"added-{remote.added:06d}.png",
                fake_png(rng, rng.randrange(500, 8000)),
                time.time() - 60,
            )

    def incomplete(self) -> list[str]:
        """Return the containers whose local copy is not yet byte- and mtime-identical to
        their remote root (empty when every file of every container arrived)."""
        return [
            r.name for r in self.remotes if tree_files(self.media / r.name) != tree_files(r.root)
        ]

    def status(self) -> dict[str, Any]:
        with ControlClient(self.socket) as client:
            result: dict[str, Any] = client.call("status", {}, timeout=60)
            return result

    def all_synced_since(self, moment: str) -> bool:
        """True once every container's last sync started at or after ISO time `moment` and
        succeeded."""
        containers = self.status()["containers"]
        return all(
            c["last_sync"] is not None
            and c["last_sync"]["result"] == "success"
            and c["last_sync"]["started_at"] >= moment
            and c["state"] == "idle"
            for c in containers
        )


def samples_json(samples: list[ProcSample]) -> list[dict[str, Any]]:
    return [asdict(s) for s in samples]
