"""Scale figures of the daemon: a 100,000-file container and 50 idle containers.

    python -m bench.scale [--files 100000] [--containers 50] [--idle 60] [--rounds 3]

Starts its own sshd on 127.0.0.1 and the real daemon, then measures:
  1. listing and diffing one container of `--files` files (Forge-like folders): the
     daemon's own duration of a no-change run on its open connection (median of
     `--rounds`), both kinds: right after a run that fetched a file (the listing is
     parsed and every file planned) and when the listing is byte-identical to the last
     run's (its plan reused; local copies still checked); against `rsync -a`'s no-change
     re-run of the same tree; and the daemon's peak RSS (VmHWM) during those runs (reset
     through /proc/PID/clear_refs, which needs root or the same user) and during the
     initial sync before them;
  2. a daemon with `--containers` configured containers (their first sync done, then the
     shipped 5-minute interval) idling for `--idle` seconds: its CPU use in % of one core,
     from /proc (utime + stime over wall time), with its RSS, threads and descriptors.
Targets (issue 8): 1. under 2 s and under 150 MB RSS; 2. under 1% CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import as_installed
from bench.compare import Bench, median, run_durations
from tests.support.cli import BIN
from tests.support.daemon import wait_until
from tests.support.load import cpu_percent, sample
from tests.support.sshd import SshdServer

MANY = """\
media_root: {work}/media-many
state_dir: {work}/state-many
log: {{level: warning}}
control: {{socket: {work}/many.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{user: {user}, identity_file: {key}, known_hosts: {known}, port: {port}}}
  sync: {{settle: 0s, include: ["*"]}}
containers:
"""


def generate_flat(root: Path, count: int) -> None:
    """`count` tiny PNG-like files in folders of 1,000 (Forge's per-day folders)."""
    for i in range(count):
        folder = root / f"txt2img-images/2026-{1 + i // 1000 // 28:02d}-{1 + i // 1000 % 28:02d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}-1234567890.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
        os.utime(path, (1.7e9 + i, 1.7e9 + i))


def settle(pid: int, limit_s: float = 30.0) -> None:
    """Wait until the process's RSS holds still (two samples 1 s apart within 1 MiB)."""
    deadline = time.monotonic() + limit_s
    last = sample(pid).rss_mib
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sample(pid).rss_mib
        if abs(now - last) < 1.0:
            return
        last = now


def many_files(
    bench: Bench, root: Path, rounds: int
) -> tuple[list[float], list[float], float, float, float]:
    """Return the durations of no-change runs that parse and plan the listing and of those
    that reuse it, rsync's no-change re-run, and the daemon's peak RSS (MiB) over the
    initial sync and over the later runs alone."""
    config = bench.config("scale", root)
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = bench.work / "control.sock"
    planned, reused = [], []
    try:
        wait_until(socket.exists, timeout=30)
        run_durations(socket, 1)  # the initial sync
        peak_initial = sample(process.pid).hwm_mib
        settle(process.pid)  # the initial sync's aftermath (event delivery, trim) ends
        # Reset the peak (VmHWM) so the next figure is the later runs' own.
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")
        for n in range(rounds):
            new = root / "txt2img-images" / "new" / f"{n:03d}.png"
            new.parent.mkdir(parents=True, exist_ok=True)
            new.write_bytes(b"\x89PNG\r\n\x1a\n")
            run_durations(socket, 1)  # fetches the new file
            planned += run_durations(socket, 1)  # nothing new: parsed and planned
            reused += run_durations(socket, 1)  # the same bytes again: reused
        peak_polls = sample(process.pid).hwm_mib
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    bench.rsync(root)
    rsync_polls = [bench.rsync(root, fresh=False)[0] for _ in range(rounds)]
    return planned, reused, median(rsync_polls), peak_initial, peak_polls


def idle_containers(bench: Bench, work: Path, containers: int, idle_s: float) -> dict[str, float]:
    sshd = bench.sshd
    text = MANY.format(
        work=work, user=sshd.user, key=sshd.client_key, known=sshd.known_hosts, port=sshd.port
    )
    for n in range(containers):
        root = work / "remote-many" / f"c{n:02d}"
        root.mkdir(parents=True, exist_ok=True)
        (root / "one.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        text += f"  - {{name: c{n:02d}, kind: generic, host: 127.0.0.1, root: {root}}}\n"
    config = work / "many.yaml"
    config.write_text(text)
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        media = work / "media-many"
        wait_until(
            lambda: sum(1 for _ in media.glob("c*/one.png")) == containers,
            timeout=300,
            what="the first sync of every container",
        )
        time.sleep(2)  # the last runs finish recording
        before = sample(process.pid)
        time.sleep(idle_s)
        after = sample(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {
        "cpu_percent": cpu_percent(before, after),
        "rss_mib": after.rss_mib,
        "threads": after.threads,
        "fds": after.fds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    as_installed()
    work = Path(tempfile.mkdtemp(prefix="forge-scale-"))
    root = work / "remote" / "many"
    print(f"generating {args.files} files in {work} ...", file=sys.stderr)
    generate_flat(root, args.files)
    sshd = SshdServer(work / "sshd").start()
    bench = Bench(work, sshd)
    try:
        planned, reused, rsync_poll, peak_initial, peak_polls = many_files(bench, root, args.rounds)
        idle = idle_containers(bench, work, args.containers, args.idle)
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nforge-syncd at scale ({args.rounds} rounds, medians)\n")
    print("| measurement | forge-syncd | target | rsync -a |")
    print("|---|---|---|---|")
    for label, durations in (
        ("listing parsed and planned", planned),
        ("listing unchanged, plan reused", reused),
    ):
        print(
            f"| no-change run, one container of {args.files:,} files: {label} | "
            f"{median(durations):.2f} s (runs: {', '.join(f'{d:.2f}' for d in durations)}) "
            f"| < 2 s | {rsync_poll:.2f} s |"
        )
    print(
        f"| daemon peak RSS during those runs | {peak_polls:.0f} MiB "
        f"({peak_polls * 1.048576:.0f} MB) | < 150 MB | |"
    )
    print(
        f"| daemon peak RSS during the initial sync of all {args.files:,} files | "
        f"{peak_initial:.0f} MiB ({peak_initial * 1.048576:.0f} MB) | | |"
    )
    print(
        f"| idle CPU, {args.containers} containers, {args.idle:.0f} s window | "
        f"{idle['cpu_percent']:.2f}% of one core | < 1% | |"
    )
    print(
        f"| idle daemon with {args.containers} containers | RSS {idle['rss_mib']:.0f} MiB, "
        f"{idle['threads']:.0f} threads, {idle['fds']:.0f} descriptors | | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
