"""Benchmark forge-syncd against `rsync -a` over the same sshd and key, side by side.

    python -m bench.compare [--rounds 3] [--big 40x25] [--small 20000] [--workdir DIR] [--rclone]

Starts its own sshd on 127.0.0.1, generates the data sets with a fixed seed (a Forge-like
big-files set and a many-small-files set), then for each measurement runs both tools
alternately, `--rounds` times, and prints medians: seconds, MB/s, files/s, peak RSS and the
ratio forge-syncd / rsync (below 1 = forge-syncd faster). Measurements:
  1. initial sync of each set (fresh destination; forge-syncd --once, a new process), also
     against `rsync -a --fsync`, which like forge-syncd makes each file durable before it
     counts (plain rsync leaves the data in the page cache)
  2. no-change poll: the daemon's own run duration on its open connection
     (`forge-syncctl sync --wait`), against rsync's no-change re-run
  3. 1% new files in the small set, same two ways
and a raw `ssh cat` of the big set for reference (throughput ceiling of the link). With
`--rclone` (rclone installed), `rclone copy` over SFTP (4 transfers, remote hash checks
off: with them rclone runs a remote `md5sum` per file, ~20 files/s here) runs too, for the
initial sync of each set and its no-change re-run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import as_installed
from tests.support.cli import BIN
from tests.support.daemon import wait_until
from tests.support.sshd import SshdServer

CONFIG = """\
media_root: {media}
state_dir: {state}
log: {{level: warning}}
control: {{socket: {work}/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{user: {user}, identity_file: {key}, known_hosts: {known}, port: {port}}}
  sync: {{settle: 0s, interval: 1h, include: ["*"]}}
containers:
  - {{name: bench, kind: generic, host: 127.0.0.1, root: {root}}}
"""


def generate(root: Path, count: int, low: int, high: int, seed: int) -> tuple[int, int]:
    """Write `count` PNG-like files of low..high bytes under root/YYYY-MM-DD/; return
    (files, bytes)."""
    rng = random.Random(seed)
    total = 0
    for i in range(count):
        size = rng.randint(low, high)
        folder = root / f"2026-11-{1 + i % 28:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}-{rng.randrange(10**9)}.png"
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8))
        os.utime(path, (1.7e9 + i, 1.7e9 + i))
        total += size
    return count, total


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run argv; return (seconds, peak RSS in KiB of it and its children)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    return elapsed, usage.ru_maxrss


class Bench:
    def __init__(self, work: Path, sshd: SshdServer) -> None:
        self.work = work
        self.sshd = sshd
        self.ssh = " ".join(sshd.ssh_command())

    def config(self, name: str, root: Path) -> Path:
        """Write the config of `name` (`once`, `daemon`) syncing `root`. The daemon's has
        no live mode: a run starts only when the bench asks for one (a watcher would fetch
        new files before the timed run, which would then find nothing to do)."""
        path = self.work / f"{name}.yaml"
        text = CONFIG
        if name == "daemon":
            text = text.replace('include: ["*"]}}', 'include: ["*"], watch: false}}')
        path.write_text(
            text.format(
                media=self.work / f"media-{name}",
                state=self.work / f"state-{name}",
                work=self.work,
                user=self.sshd.user,
                key=self.sshd.client_key,
                known=self.sshd.known_hosts,
                port=self.sshd.port,
                root=root,
            )
        )
        return path

    def forge_once(self, root: Path) -> tuple[float, int]:
        config = self.config("once", root)
        shutil.rmtree(self.work / "media-once", ignore_errors=True)
        shutil.rmtree(self.work / "state-once", ignore_errors=True)
        return timed([str(BIN / "forge-syncd"), "--once", "--config", str(config)])

    def rsync(self, root: Path, fresh: bool = True, *options: str) -> tuple[float, int]:
        dest = self.work / "rsync-dest"
        if fresh:
            shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(exist_ok=True)
        source = f"{self.sshd.user}@127.0.0.1:{root}/"
        return timed(["rsync", "-a", *options, "-e", self.ssh, source, f"{dest}/"])

    def rclone(self, root: Path, fresh: bool = True) -> tuple[float, int]:
        """`rclone copy` over SFTP (4 transfers, its default), same sshd, key and known_hosts."""
        dest = self.work / "rclone-dest"
        if fresh:
            shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(exist_ok=True)
        remote = (
            f":sftp,host=127.0.0.1,port={self.sshd.port},user={self.sshd.user},"
            f"key_file={self.sshd.client_key},known_hosts_file={self.sshd.known_hosts}:{root}"
        )
        return timed(
            ["rclone", "copy", "--transfers", "4", "--sftp-disable-hashcheck", remote, str(dest)]
        )

    def raw_cat(self, root: Path) -> float:
        started = time.perf_counter()
        subprocess.run(
            [
                *self.sshd.ssh_command(),
                "127.0.0.1",
                f"cd {root} && find . -type f -print0 | xargs -0 cat",
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(
    label: str,
    tool: str,
    seconds: float,
    files: int,
    nbytes: int,
    rss_kib: int,
    ratio: float | None,
) -> str:
    rate = nbytes / seconds / 1e6 if seconds else 0
    per_file = files / seconds if seconds else 0
    ratio_text = f"{ratio:.2f}" if ratio is not None else ""
    return (
        f"| {label} | {tool} | {seconds:.3f} | {rate:.0f} | {per_file:,.0f} | "
        f"{rss_kib / 1024:.0f} | {ratio_text} |"
    )


def run_durations(socket: Path, runs: int, before_each: object = None) -> list[float]:
    """Trigger `runs` syncs of the running daemon one after another (`forge-syncctl sync
    --wait`), calling `before_each(n)` first; return each run's own duration (from its
    history record: the work on the open connection, without process start-up)."""
    ctl = [str(BIN / "forge-syncctl"), "--socket", str(socket)]
    durations = []
    for n in range(runs):
        if callable(before_each):
            before_each(n)
        subprocess.run([*ctl, "sync", "--wait"], capture_output=True, check=True, timeout=900)
        # The run asked for, not a scheduled one.
        last = next(run for run in finished_syncs(socket) if run["trigger"] == "manual")
        durations.append(run_seconds(last))
    return durations


def finished_syncs(socket: Path) -> list[dict[str, Any]]:
    """The daemon's last finished sync runs, newest first (`forge-syncctl history`)."""
    history = subprocess.run(
        [str(BIN / "forge-syncctl"), "--socket", str(socket), "history", "--limit", "10", "--json"],
        capture_output=True,
        check=True,
    )
    runs: list[dict[str, Any]] = json.loads(history.stdout)["runs"]
    return [run for run in runs if run["job"] == "sync" and run["finished_at"] is not None]


def run_seconds(run: dict[str, Any]) -> float:
    """A history record's own duration (started to finished)."""
    started, finished = (
        datetime.fromisoformat(run[key].replace("Z", "+00:00"))
        for key in ("started_at", "finished_at")
    )
    return (finished - started).total_seconds()


def daemon_runs(bench: Bench, root: Path, rounds: int, before_each: object = None) -> list[float]:
    """Start the daemon on `root`, let it sync, then time `rounds` runs on its open
    connection; return the runs' own durations."""
    config = bench.config("daemon", root)
    shutil.rmtree(bench.work / "media-daemon", ignore_errors=True)
    shutil.rmtree(bench.work / "state-daemon", ignore_errors=True)
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = bench.work / "control.sock"
    try:
        wait_until(socket.exists, timeout=30)
        # The run the daemon starts on its own first: a round's files added while it still
        # lists would be fetched by the next round's run (one round timing nothing, the
        # next twice the files).
        wait_until(lambda: any(r["trigger"] == "scheduled" for r in finished_syncs(socket)), 120)
        run_durations(socket, 1)  # the initial sync
        return run_durations(socket, rounds, before_each)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", default="40x25", help="COUNTxMiB of the big set")
    parser.add_argument("--small", type=int, default=20000, help="files in the small set")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--rclone", action="store_true", help="also run rclone copy (sftp)")
    args = parser.parse_args()
    as_installed()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="forge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    count, mib = (int(x) for x in args.big.split("x"))
    big, small = work / "remote" / "big", work / "remote" / "small"
    print(f"generating in {work} ...", file=sys.stderr)
    big_files, big_bytes = generate(big, count, mib * 1024 * 1024 - 4096, mib * 1024 * 1024, 1)
    small_files, small_bytes = generate(small, args.small, 2048, 20480, 2)
    sshd = SshdServer(work / "sshd").start()
    bench = Bench(work, sshd)
    lines = [
        "| measurement | tool | seconds | MB/s | files/s | peak RSS MiB | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    try:
        for label, root, files, nbytes in (
            ("initial, big set", big, big_files, big_bytes),
            ("initial, small set", small, small_files, small_bytes),
        ):
            ours, theirs, durable, rclone = [], [], [], []
            for n in range(args.rounds):
                trio = [
                    (ours, lambda r=root: bench.forge_once(r)),
                    (theirs, lambda r=root: bench.rsync(r)),
                    (durable, lambda r=root: bench.rsync(r, True, "--fsync")),
                ]
                if args.rclone:
                    trio.append((rclone, lambda r=root: bench.rclone(r)))
                for results, run in trio if n % 2 == 0 else trio[::-1]:
                    results.append(run())
            f_s, r_s = median([t for t, _ in ours]), median([t for t, _ in theirs])
            d_s = median([t for t, _ in durable])
            lines.append(
                row(
                    label,
                    "forge-syncd --once",
                    f_s,
                    files,
                    nbytes,
                    max(m for _, m in ours),
                    f_s / r_s,
                )
            )
            lines.append(
                row(label, "rsync -a", r_s, files, nbytes, max(m for _, m in theirs), None)
            )
            lines.append(
                row(
                    label,
                    f"rsync -a --fsync (durable like forge-syncd; forge/this {f_s / d_s:.2f})",
                    d_s,
                    files,
                    nbytes,
                    max(m for _, m in durable),
                    None,
                )
            )
            if rclone:
                c_s = median([t for t, _ in rclone])
                lines.append(
                    row(
                        label,
                        f"rclone copy, sftp, 4 transfers (forge/this {f_s / c_s:.2f})",
                        c_s,
                        files,
                        nbytes,
                        max(m for _, m in rclone),
                        None,
                    )
                )
        raw = median([bench.raw_cat(big) for _ in range(args.rounds)])
        lines.append(
            row("raw ssh cat, big set", "ssh (OpenSSH)", raw, big_files, big_bytes, 0, None)
        )
        both = work / "remote"
        poll = daemon_runs(bench, both, args.rounds)
        bench.rsync(both)
        rsync_poll = [bench.rsync(both, fresh=False)[0] for _ in range(args.rounds)]
        rclone_poll: list[float] = []
        if args.rclone:
            bench.rclone(both)
            rclone_poll = [bench.rclone(both, fresh=False)[0] for _ in range(args.rounds)]
        total_files = big_files + small_files
        lines.append(
            row(
                "no-change poll, both sets",
                "forge-syncd daemon run",
                median(poll),
                total_files,
                0,
                0,
                median(poll) / median(rsync_poll),
            )
        )
        lines.append(
            row(
                "no-change poll, both sets",
                "rsync -a re-run",
                median(rsync_poll),
                total_files,
                0,
                0,
                None,
            )
        )
        if rclone_poll:
            lines.append(
                row(
                    "no-change poll, both sets",
                    "rclone copy re-run",
                    median(rclone_poll),
                    total_files,
                    0,
                    0,
                    None,
                )
            )
        new_count = max(1, small_files // 100)

        def add_new(n: int) -> None:
            generate(small / f"new-{n}", new_count, 2048, 20480, 100 + n)

        ours_new = daemon_runs(bench, small, args.rounds, add_new)
        theirs_new = []
        for n in range(args.rounds):
            add_new(args.rounds + n)
            theirs_new.append(bench.rsync(small, fresh=False)[0])
        lines.append(
            row(
                "1% new files, small set",
                "forge-syncd daemon run",
                median(ours_new),
                new_count,
                0,
                0,
                median(ours_new) / median(theirs_new),
            )
        )
        lines.append(
            row(
                "1% new files, small set",
                "rsync -a re-run",
                median(theirs_new),
                new_count,
                0,
                0,
                None,
            )
        )
    finally:
        sshd.stop()
    print(
        f"\nforge-syncd vs rsync -a over the same sshd ({args.rounds} rounds, medians; "
        f"big set {big_files} x {mib} MiB, small set {small_files} files of 2-20 KiB)\n"
    )
    print("\n".join(lines))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
