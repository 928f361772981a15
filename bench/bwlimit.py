"""Benchmark the bandwidth limits (`sync.bwlimit`, `limits:`), through the emulated link.

    python -m bench.bwlimit [--rtt 50ms] [--rate 80mbit] [--rounds 3] [--seconds 15]
                            [--workdir DIR] [--only auto|limits]

Starts its own sshd on 127.0.0.1. `auto`: a `WanLink` (tests/support/wan.py) in front of it
in FIFO mode (one queue for every connection, as a home router's buffer: a bulk flow's
backlog delays everyone's packets), and an interactive flow through the same link (a second
SSH connection sending a keepalive every 100 ms and timing its answer, as a shell's
keystrokes or a call's packets would wait). Per round, alternately: the interactive flow
alone (its base round trip), a forge-syncd run with `bwlimit: auto` beside it, and one
without a limit beside it. Reported: how far the interactive flow's round trip rose (median
and p95 over the run, minus its idle median) and what share of the link forge-syncd used
(bytes over the run's transfer time, measured by its limiter; the link's rate is the
emulator's). `limits`: on loopback, a timetable whose current entry is 4 MiB/s, and two
containers under a global cap of 8 MiB/s (no own limit), each run about 30 s; reported: the
rate measured over the run (bytes / time) against the limit. Medians over the rounds; the
load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from bench.wan import parse_duration, parse_rate
from forge_syncd.config.bwlimit import parse_bwlimit
from forge_syncd.config.model import ContainerConfig
from forge_syncd.limits.registry import LIMITS, Limiter
from forge_syncd.transports.ssh.connection import connect
from forge_syncd.transports.ssh.ping import round_trip
from tests.conftest import make_container
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer
from tests.support.wan import WanLink, through

MIB = 1024 * 1024


def make_remote(root: Path, total: int, size: int = 8 * MIB) -> None:
    """Write `total` bytes of random files of `size` under `root` (once)."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(total // size):
        path = root / f"{index:04d}.png"
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(os.urandom(size))


class Interactive:
    """A second SSH connection through the link timing a keepalive round trip every 100
    ms: (monotonic time, seconds) samples."""

    def __init__(self, container: ContainerConfig) -> None:
        self.connection = connect(container.host, container.ssh)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            rtt = round_trip(self.connection)
            if rtt is not None:
                self.samples.append((time.monotonic(), rtt))
            self.stop.wait(0.1)

    def between(self, start: float, end: float) -> list[float]:
        return [rtt for when, rtt in self.samples if start <= when <= end]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.connection.transport.close()


class Timed(NamedTuple):
    """One run: when it started and ended, its rate over the whole transfer (first byte to
    end) and its steady rate (from STEADY_S after the first byte: auto's start left out)."""

    start: float
    end: float
    rate: float
    steady: float


STEADY_S = 3.0


def timed_sync(container: ContainerConfig, work: Path) -> Timed:
    """Sync `container` into a fresh library; return its Timed, from the bytes its limiter
    saw (BW_TRACE=1 prints auto's rate and delay every 0.25 s)."""
    for path in (work / "media", work / "state"):
        shutil.rmtree(path, ignore_errors=True)
    reads: list[tuple[float, int]] = []
    limiter = LIMITS.limiter(container.name, container.sync.bwlimit, container.sync.auto_delay_s)
    original = limiter.consume

    def consume(nbytes: int) -> None:
        reads.append((time.monotonic(), nbytes))
        original(nbytes)

    limiter.consume = consume  # type: ignore[method-assign]
    start = time.monotonic()
    done = threading.Event()
    threading.Thread(target=trace, args=(limiter, start, done), daemon=True).start()
    try:
        outcome = run_sync(container, work / "media", work / "state")
    finally:
        del limiter.consume
        done.set()
    end = time.monotonic()
    assert outcome.result == "success", outcome
    first = reads[0][0] if reads else start
    total = sum(n for _, n in reads)
    late = sum(n for t, n in reads if t >= first + STEADY_S)
    steady = (
        late / (end - first - STEADY_S) if end - first > STEADY_S + 1 else total / (end - first)
    )
    return Timed(start, end, total / (end - first), steady)


def trace(limiter: Limiter, start: float, done: threading.Event) -> None:
    while not done.wait(0.25):
        auto = limiter.auto
        if auto is not None and os.environ.get("BW_TRACE"):
            print(
                f"    t={time.monotonic() - start:5.2f} rate={auto.rate / MIB:6.2f} MiB/s"
                f" measured={limiter.measured_bps() / MIB:6.2f} MiB/s"
                f" rtt={auto.last_rtt_s} delay={auto.delay_s}",
                flush=True,
            )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def auto_bench(
    work: Path, sshd: SshdServer, rtt: float, rate: float, args: argparse.Namespace
) -> None:
    """The interactive flow's rise and forge-syncd's share of the link, auto against off."""
    total = int(rate * args.seconds) // (8 * MIB) * 8 * MIB
    remote = work / "remote-auto"
    make_remote(remote, total)
    rows: dict[str, list[tuple[float, float, float, float]]] = {"auto": [], "off": []}
    idle_all: list[float] = []
    with WanLink(sshd.port, rtt, rate, fifo=True) as link:
        view = through(sshd, link, work / "known_hosts-link")
        probe = Interactive(make_container(view, remote, name="interactive"))
        try:
            for _ in range(args.rounds):
                for variant in ("auto", "off"):
                    time.sleep(3)  # the link drains: the interactive flow's idle samples
                    now = time.monotonic()
                    idle = probe.between(now - 2.5, now)
                    idle_all += idle
                    bwlimit = parse_bwlimit(variant) if variant == "auto" else None
                    container = make_container(
                        view, remote, name=f"bench-{variant}", bwlimit=bwlimit, watch=False
                    )
                    run = timed_sync(container, work / variant)
                    during = probe.between(run.start + 2, run.end)
                    base = statistics.median(idle)
                    row = (
                        run.rate / rate,
                        run.steady / rate,
                        statistics.median(during) - base,
                        pct(during, 0.95) - base,
                    )
                    rows[variant].append(row)
                    print(
                        f"  {variant}: {row[0]:.0%} of the link ({row[1]:.0%} steady),"
                        f" interactive RTT +{row[2] * 1000:.0f} ms median,"
                        f" +{row[3] * 1000:.0f} ms p95 (idle {base * 1000:.0f} ms)",
                        flush=True,
                    )
        finally:
            probe.close()
    print(
        f"\n### bwlimit auto, {rtt * 1000:.0f} ms RTT, {rate * 8 / 1e6:.0f} Mbit/s FIFO link,"
        f" {total / 1e6:.0f} MB a run, {args.rounds} rounds, medians\n"
    )
    print("| variant | link share (whole run) | after 3 s | interactive RTT rise, median | p95 |")
    print("|---|---|---|---|---|")
    for variant, got in rows.items():
        share, steady, rise, p95 = (statistics.median(r[i] for r in got) for i in range(4))
        print(
            f"| {variant} | {share:.0%} | {steady:.0%} | +{rise * 1000:.0f} ms"
            f" | +{p95 * 1000:.0f} ms |"
        )
    print(f"\nidle interactive RTT median {statistics.median(idle_all) * 1000:.1f} ms")


def capped_pair(work: Path, sshd: SshdServer, remotes: tuple[Path, Path]) -> tuple[float, float]:
    """Two containers without limits of their own at once; return their rates."""
    got: dict[str, float] = {}

    def one(name: str, remote: Path) -> None:
        container = make_container(sshd, remote, name=name, watch=False)
        got[name] = timed_sync(container, work / name).rate

    threads = [
        threading.Thread(target=one, args=(name, remote))
        for name, remote in zip(("cap-a", "cap-b"), remotes, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got["cap-a"], got["cap-b"]


def limits_bench(work: Path, sshd: SshdServer, args: argparse.Namespace) -> None:
    """A timetable's current entry and the global cap, over 30 s runs on loopback."""
    limit, seconds = 4 * MIB, 30
    remotes = (work / "remote-a", work / "remote-b")
    for remote in remotes:
        make_remote(remote, limit * seconds)
    now = datetime.now()
    before, after = now - timedelta(hours=1), now + timedelta(hours=1)
    table = f"{before:%H:%M},{limit // MIB}MiB/s {after:%H:%M},off"
    timetable: list[float] = []
    shared: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        container = make_container(
            sshd, remotes[0], name="bench-timetable", bwlimit=parse_bwlimit(table), watch=False
        )
        got = timed_sync(container, work / "timetable").rate
        timetable.append(got / limit)
        print(f"  timetable {table}: {got / MIB:.2f} MiB/s ({got / limit:.1%})", flush=True)
        LIMITS.configure(parse_bwlimit(f"{2 * limit // MIB}MiB/s"))
        try:
            a, b = capped_pair(work, sshd, remotes)
        finally:
            LIMITS.configure(None)
        shared.append((a / limit, b / limit))
        print(f"  global cap: {a / MIB:.2f} and {b / MIB:.2f} MiB/s", flush=True)
    print(f"\n### timetable and global cap, loopback, {seconds} s runs, {args.rounds} rounds\n")
    print("| limit | measured / limit (median) |")
    print("|---|---|")
    print(f"| timetable, current entry 4 MiB/s | {statistics.median(timetable):.1%} |")
    for index, name in enumerate("ab"):
        median = statistics.median(s[index] for s in shared)
        print(f"| global cap 8 MiB/s: container {name} (its share 4 MiB/s) | {median:.1%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="50ms")
    parser.add_argument("--rate", default="80mbit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15, help="auto: a run at link rate")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--only", choices=("auto", "limits"))
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="forge-bench-bwlimit-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    sshd = SshdServer(work / "sshd").start()
    try:
        if args.only in (None, "auto"):
            auto_bench(work, sshd, parse_duration(args.rtt), parse_rate(args.rate), args)
        if args.only in (None, "limits"):
            limits_bench(work, sshd, args)
    finally:
        sshd.stop()
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
