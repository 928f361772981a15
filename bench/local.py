"""Benchmark `transport: local` against `rsync -a` and `cp -a` between two local folders,
side by side in one run.

    python -m bench.local [--rounds 3] [--big 200x1500] [--small 5000] [--workdir DIR]

Generates, with a fixed seed, an "hour of output" (`--big` COUNTxKB PNG-like files, default
200 of ~1.5 MB) and a many-small-files set (`--small` files of 2 to 20 KB), then for each
measurement runs the tools alternately, `--rounds` times, and prints medians and the ratio
forge-syncd / reference (below 1 = forge-syncd faster). Measurements, per set:
  1. first sync into a fresh folder: `forge-syncd --once` (a new process: start-up, config,
     manifest, every file verified and made durable with syncfs), and the daemon's own first
     run (`forge-syncctl sync --wait` on a running daemon: the run without process
     start-up); against `rsync -a` and `cp -a` (both leave the data in the page cache), and
     beside them the fair peers `rsync -a; sync` and `cp -a; sync` (forge-syncd's copies are
     durable and hashed before they count);
  2. no-change poll: the running daemon's run (`forge-syncctl sync --wait`) against
     `rsync -a`'s no-change re-run.
Issue 27's targets: first sync <= 1.0x rsync -a and >= 80% of cp -a's speed (ratio to cp
<= 1.25), no-change poll <= 0.3x.
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
from bench.compare import finished_syncs, generate, median, run_durations, run_seconds, timed
from tests.support.cli import BIN
from tests.support.daemon import wait_until

CONFIG = """\
media_root: {work}/media-{name}
state_dir: {work}/state-{name}
log: {{level: warning}}
control: {{socket: {work}/control-{name}.sock}}
metrics: {{listen: null}}
containers:
  - name: bench
    transport: local
    kind: generic
    root: {root}
    sync: {{settle: 0s, interval: 1h, watch: false, include: ["*"]}}
"""


def config(work: Path, name: str, root: Path) -> Path:
    """Write a config of one local container on `root`, with fresh library and state."""
    shutil.rmtree(work / f"media-{name}", ignore_errors=True)
    shutil.rmtree(work / f"state-{name}", ignore_errors=True)
    path = work / f"{name}.yaml"
    path.write_text(CONFIG.format(work=work, name=name, root=root))
    return path


def forge_once(work: Path, root: Path) -> float:
    return timed([str(BIN / "forge-syncd"), "--once", "--config", str(config(work, "once", root))])[
        0
    ]


def copy_tool(work: Path, root: Path, argv: list[str], fresh: bool = True) -> float:
    """Run a copy tool from `root` into work/dest (emptied first when `fresh`)."""
    dest = work / "dest"
    if fresh:
        shutil.rmtree(dest, ignore_errors=True)
    if argv[0] == "cp":
        return timed([*argv, str(root), str(dest)])[0]
    dest.mkdir(exist_ok=True)
    return timed([*argv, f"{root}/", f"{dest}/"])[0]


def and_sync(work: Path, root: Path, argv: list[str]) -> float:
    """A copy tool then `sync` (the data on disk, as forge-syncd's copies are)."""
    started = time.perf_counter()
    copy_tool(work, root, argv)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def daemon_runs(work: Path, root: Path, rounds: int) -> tuple[float, list[float]]:
    """Start the daemon on `root`; return its first run's duration (the sync it starts
    with, into an empty library) and `rounds` no-change runs' durations (each the run's own,
    from its history record: without process start-up)."""
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config(work, "daemon", root))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = work / "control-daemon.sock"
    try:
        wait_until(socket.exists, timeout=30)
        wait_until(lambda: bool(finished_syncs(socket)), timeout=900)
        return run_seconds(finished_syncs(socket)[-1]), run_durations(socket, rounds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def measure(work: Path, label: str, root: Path, rounds: int, files: int, nbytes: int) -> None:
    """Print the rows of one data set."""
    once, rsync, cp, cp_sync, rsync_sync, rsync_poll = [], [], [], [], [], []
    firsts: list[float] = []
    polls: list[float] = []
    for n in range(rounds):
        subprocess.run(["sync"], check=True)
        runs = [
            lambda: once.append(forge_once(work, root)),
            lambda: rsync.append(copy_tool(work, root, ["rsync", "-a"])),
            lambda: rsync_poll.append(copy_tool(work, root, ["rsync", "-a"], fresh=False)),
            lambda: cp.append(copy_tool(work, root, ["cp", "-a"])),
            lambda: cp_sync.append(and_sync(work, root, ["cp", "-a"])),
            lambda: rsync_sync.append(and_sync(work, root, ["rsync", "-a"])),
        ]
        for run in runs if n % 2 == 0 else runs[::-1]:  # the poll right after its rsync
            run()
        shutil.rmtree(work / "dest", ignore_errors=True)
        subprocess.run(["sync"], check=True)
        first, poll = daemon_runs(work, root, 2)  # the first poll after a sync has no memo
        firsts.append(first)
        polls.append(poll[-1])
    r, c, rs, cs = median(rsync), median(cp), median(rsync_sync), median(cp_sync)
    print(row(f"{label}: first sync", "rsync -a", r, files, nbytes, None))
    print(row(f"{label}: first sync", "rsync -a; sync", rs, files, nbytes, None))
    print(row(f"{label}: first sync", "cp -a", c, files, nbytes, None))
    print(row(f"{label}: first sync", "cp -a; sync", cs, files, nbytes, None))
    once_m, first = median(once), median(firsts)
    print(row(f"{label}: first sync", "forge-syncd --once", once_m, files, nbytes, once_m / r))
    print(versus(once_m, c, rs, cs))
    print(row(f"{label}: first sync", "daemon run", first, files, nbytes, first / r))
    print(versus(first, c, rs, cs))
    rp, fp = median(rsync_poll), median(polls)
    print(row(f"{label}: no-change poll", "rsync -a", rp, files, 0, None))
    print(row(f"{label}: no-change poll", "daemon run", fp, files, 0, fp / rp))
    sys.stdout.flush()


def row(label: str, tool: str, seconds: float, files: int, nbytes: int, ratio: float | None) -> str:
    rate = nbytes / seconds / 1e6 if seconds else 0
    ratio_text = f"{ratio:.2f}" if ratio is not None else ""
    return (
        f"| {label} | {tool} | {seconds:.3f} | {rate:.0f} | {files / seconds:,.0f} | {ratio_text} |"
    )


def versus(seconds: float, cp: float, rsync_sync: float, cp_sync: float) -> str:
    """The line under a first sync: against cp -a, and against the fair peers."""
    return (
        f"|  | (vs cp -a: {seconds / cp:.2f}x, {100 * cp / seconds:.0f}% of its speed; "
        f"vs rsync -a; sync: {seconds / rsync_sync:.2f}x; vs cp -a; sync: "
        f"{seconds / cp_sync:.2f}x, {100 * cp_sync / seconds:.0f}% of its speed) | | | | |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.local", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", default="200x1500", help="COUNTxKB of the hour of output")
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    as_installed()
    work = Path(tempfile.mkdtemp(prefix="bench-local-", dir=args.workdir))
    count, kb = (int(part) for part in args.big.split("x"))
    try:
        big = generate(work / "big", count, kb * 900, kb * 1100, seed=1)
        small = generate(work / "small", args.small, 2_000, 20_000, seed=2)
        print(
            f"local folder -> local folder on {work} ({args.rounds} rounds, medians; "
            f"load average before: {os.getloadavg()[0]:.2f})"
        )
        print("| measurement | tool | s | MB/s | files/s | ratio to rsync |")
        print("|---|---|---|---|---|---|")
        measure(work, f"hour ({count} x ~{kb / 1000:g} MB)", work / "big", args.rounds, *big)
        measure(work, f"{args.small} small", work / "small", args.rounds, *small)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
