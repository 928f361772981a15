"""Benchmark forge-syncd against `rsync -a` through an emulated WAN link, side by side.

    python -m bench.wan [--rtt 20ms,100ms,250ms] [--rate 200mbit] [--flow-cap 50mbit]
                        [--rounds 3] [--small 5000] [--workdir DIR] [--rclone]
                        [--connections auto,1] [--sets hour,small] [--no-change on|off]
    python -m bench.wan --selftest [--rtt 100ms] [--rate 200mbit] [--flow-cap 50mbit]

Starts its own sshd on 127.0.0.1 and, for each RTT, a `WanLink` (tests/support/wan.py: a
userspace proxy that delays each direction by RTT/2 and serializes bytes at the rate) in
front of it; every tool connects through the link. `--flow-cap` also caps each TCP connection
through the link at that rate (a lossy path: the cap stands for a loss rate at the RTT, see
tests/support/wan.py; 50 Mbit/s at 100 ms is p = 8e-6 for Reno, 3e-5 for CUBIC). Data sets,
generated with fixed seeds (sizes and names; contents random): the hour-of-output set (60
PNG-like files of 1-2.5 MB and 200 previews of 30-80 KB, ~111 MB) and a small-files set
(`--small` files of 2-20 KiB; the issue's target is `--small 20000`). Per RTT, one markdown
table of medians over `--rounds` rounds, the tools run alternately in each round:
  1. plain TCP through the link (100 MiB written as fast as possible): the emulator's check;
  2. initial copy of each set: forge-syncd --once (a new process, fresh destination and state)
     against `rsync -a` (one invocation over the whole root), and `rclone copy` (sftp) with
     `--rclone` when it is installed;
  3. a raw `ssh cat` of the hour-of-output set (the ceiling of one OpenSSH channel);
  4. a daemon run fetching the hour-of-output set on its open connection (a fresh copy
     linked into its root each round, live mode off; the run's own duration);
  5. no-change over both sets: the daemon's own run on its open connection (a poll) and a
     forge-syncd --once re-run (a new process, kept state), against rsync's re-run.
`--connections auto,1` runs forge-syncd once per `sync.connections` setting, side by side
(each with its ratio to rsync); `--sets hour` leaves the small set out, `--no-change off`
the no-change runs.
The ratio is the median of the per-round ratios forge-syncd / rsync (below 1 = faster).
`--selftest` checks the emulator alone: the round trip it adds, plain TCP's throughput, and
with `--flow-cap` two connections at once (each near the cap, together near twice it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import as_installed
from bench.compare import Bench, daemon_runs, generate, median, timed
from tests.support.cli import BIN
from tests.support.sshd import SshdServer
from tests.support.wan import WanLink, through

MIB = 1024 * 1024
PLAIN_TCP_BYTES = 100 * MIB
FORGE, RSYNC, RCLONE = "forge-syncd --once", "rsync -a", "rclone copy, sftp, 4 transfers"
Runs = dict[str, Callable[[], float]]


def parse_duration(text: str) -> float:
    """Given `20ms`, `0.1s` or `100` (ms), return seconds. Raise ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s)?\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value = float(match[1])
    return value if match[2] == "s" else value / 1000


def parse_rate(text: str) -> float:
    """Given `200mbit`, `1gbit`, `500kbit` or `25MB` (per second), return bytes per second.
    Raise ValueError otherwise."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(gbit|mbit|kbit|bit|GB|MB|KB|B)\s*", text)
    if not match:
        raise ValueError(f"not a rate: {text!r}")
    scale = {"gbit": 1e9 / 8, "mbit": 1e6 / 8, "kbit": 1e3 / 8, "bit": 1 / 8}
    scale |= {"GB": 1e9, "MB": 1e6, "KB": 1e3, "B": 1}
    return float(match[1]) * scale[match[2]]


def hour_of_output(root: Path) -> tuple[int, int]:
    """Write an hour of output under root (60 PNG-like files of 1-2.5 MB, and 200 previews
    of 30-80 KB under root/previews); return (files, bytes)."""
    images, image_bytes = generate(root, 60, 1_000_000, 2_500_000, 11)
    previews, preview_bytes = generate(root / "previews", 200, 30_000, 80_000, 12)
    return images + previews, image_bytes + preview_bytes


def serve_one(handler: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    """Listen on a free port of 127.0.0.1 for one connection and run `handler` on it in a
    thread; return (port, thread). The listener gives up after 30 s without a client."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = int(listener.getsockname()[1])

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
        with conn:
            handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return port, thread


def plain_tcp(
    rtt: float, rate: float, nbytes: int = PLAIN_TCP_BYTES, cap: float | None = None
) -> tuple[float, float]:
    """Write `nbytes` as fast as possible through a fresh link to a reader; return MB/s end
    to end (connect to last byte read, handshake and one-way delay included) and steady
    (first to last byte read). Raise RuntimeError if bytes went missing."""
    seen: dict[str, float] = {"bytes": 0}

    def sink(conn: socket.socket) -> None:
        buffer = bytearray(MIB)
        while count := conn.recv_into(buffer):
            if not seen["bytes"]:
                seen["first"] = time.perf_counter()
            seen["bytes"] += count
        seen["last"] = time.perf_counter()

    port, reader = serve_one(sink)
    block = os.urandom(MIB)
    with WanLink(port, rtt, rate, cap) as link:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", link.port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(nbytes // MIB):
                client.sendall(block)
            client.shutdown(socket.SHUT_WR)
            reader.join(timeout=nbytes / rate * 3 + 30)
    if seen["bytes"] != nbytes or "last" not in seen:
        raise RuntimeError(f"plain TCP through the link: {seen['bytes']} of {nbytes} bytes")
    end_to_end = nbytes / (seen["last"] - started) / 1e6
    return end_to_end, nbytes / (seen["last"] - seen["first"]) / 1e6


def ping(rtt: float, rate: float, count: int = 5, cap: float | None = None) -> float:
    """Bounce one byte `count` times through a fresh link (after one warm-up bounce that
    waits for the upstream connection); return the median round trip in seconds."""

    def echo(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)

    port, _ = serve_one(echo)
    trips = []
    with (
        WanLink(port, rtt, rate, cap) as link,
        socket.create_connection(("127.0.0.1", link.port)) as client,
    ):
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for n in range(count + 1):
            started = time.perf_counter()
            client.sendall(b"x")
            if client.recv(1) != b"x":
                raise RuntimeError("the echo through the link came back wrong")
            if n:
                trips.append(time.perf_counter() - started)
    return statistics.median(trips)


def parallel_tcp(
    rtt: float, rate: float, cap: float | None, connections: int = 2, nbytes: int = 50 * MIB
) -> list[float]:
    """Write `nbytes` on each of `connections` connections at once through one link to a
    reader each; return each reader's steady MB/s (first to last byte) and, last, all of
    them together (first byte of any to last byte of all)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    port = int(listener.getsockname()[1])
    marks: list[tuple[float, float, int]] = []

    def reader(conn: socket.socket) -> None:
        buffer, total, first = bytearray(MIB), 0, 0.0
        with conn:
            while count := conn.recv_into(buffer):
                first = first or time.perf_counter()
                total += count
        marks.append((first, time.perf_counter(), total))

    def accept_all() -> None:
        with listener:
            readers = [
                threading.Thread(target=reader, args=(listener.accept()[0],))
                for _ in range(connections)
            ]
        for thread in readers:
            thread.start()
        for thread in readers:
            thread.join(timeout=nbytes / min(rate, cap or rate) * 3 + 30)

    acceptor = threading.Thread(target=accept_all, daemon=True)
    acceptor.start()
    block = os.urandom(MIB)

    def writer(link_port: int) -> None:
        with socket.create_connection(("127.0.0.1", link_port)) as client:
            for _ in range(nbytes // MIB):
                client.sendall(block)
            client.shutdown(socket.SHUT_WR)
            client.recv(1)  # until the link closes it

    with WanLink(port, rtt, rate, cap) as link:
        writers = [threading.Thread(target=writer, args=(link.port,)) for _ in range(connections)]
        for thread in writers:
            thread.start()
        acceptor.join(timeout=nbytes * connections / min(rate, cap or rate) * 3 + 30)
        for thread in writers:
            thread.join(timeout=10)
    if len(marks) != connections or any(total != nbytes for *_, total in marks):
        raise RuntimeError(f"parallel TCP through the link: {marks}")
    each = [total / (last - first) / 1e6 for first, last, total in marks]
    together = connections * nbytes / (max(m[1] for m in marks) - min(m[0] for m in marks))
    return [*each, together / 1e6]


def selftest(rtts: list[float], rate: float, cap: float | None = None) -> int:
    """Check the emulator at each RTT: print the measured round trip and plain TCP's
    throughput against the rate (or the cap); with a cap, also two connections at once.
    Return 0 if each round trip is at least the RTT (within 2 ms) and steady throughput at
    least 90% of what the link allows one connection (and, with a cap, two together), else
    1."""
    ok = True
    ceiling = min(rate, cap) if cap else rate
    capped = f", each connection capped at {cap * 8 / 1e6:.0f} Mbit/s" if cap else ""
    print(
        f"WAN emulator self-test, rate {rate / 1e6:.1f} MB/s ({rate * 8 / 1e6:.0f} Mbit/s){capped}"
    )
    print("\n| RTT | measured round trip | plain TCP 100 MiB, end to end | steady | of allowed |")
    print("|---|---|---|---|---|")
    for rtt in rtts:
        trip = ping(rtt, rate, cap=cap)
        end_to_end, steady = plain_tcp(rtt, rate, cap=cap)
        ok = ok and trip >= rtt - 0.002 and steady >= 0.9 * ceiling / 1e6
        print(
            f"| {rtt * 1000:.0f} ms | {trip * 1000:.1f} ms | {end_to_end:.1f} MB/s | "
            f"{steady:.1f} MB/s | {steady / (ceiling / 1e6) * 100:.1f}% |",
            flush=True,
        )
    if cap:
        print("\n| RTT | two connections at once: first | second | together | of allowed |")
        print("|---|---|---|---|---|")
        for rtt in rtts:
            *each, together = parallel_tcp(rtt, rate, cap)
            allowed = min(rate, 2 * cap) / 1e6
            ok = ok and together >= 0.9 * allowed
            print(
                f"| {rtt * 1000:.0f} ms | {each[0]:.1f} MB/s | {each[1]:.1f} MB/s | "
                f"{together:.1f} MB/s | {together / allowed * 100:.1f}% |",
                flush=True,
            )
    print("\nend to end counts from connect() (the handshake's 1.5 RTT and the one-way delay")
    print("included); steady counts from the first to the last byte read.")
    return 0 if ok else 1


def alternate(runs: Runs, rounds: int) -> dict[str, list[float]]:
    """Run each of `runs` once per round, in the given order on even rounds and reversed on
    odd ones; return each one's seconds per round."""
    order = list(runs)
    results: dict[str, list[float]] = {name: [] for name in order}
    for n in range(rounds):
        for name in order if n % 2 == 0 else order[::-1]:
            results[name].append(runs[name]())
    return results


def ratio(ours: list[float], theirs: list[float]) -> float:
    """Return the median of the per-round ratios ours / theirs."""
    return median([a / b for a, b in zip(ours, theirs, strict=True)])


def row(
    label: str,
    tool: str,
    seconds: float,
    files: int,
    nbytes: int,
    link_rate: float,
    ratio_value: float | None = None,
) -> str:
    """Return one table line; MB/s and % of the link rate only when bytes moved."""
    if nbytes:
        speed = nbytes / seconds
        rate_text, share = f"{speed / 1e6:.1f}", f"{speed / link_rate * 100:.0f}%"
    else:
        rate_text, share = "-", "-"
    per_file = f"{files / seconds:,.0f}" if files else "-"
    ratio_text = f"{ratio_value:.2f}" if ratio_value is not None else ""
    return (
        f"| {label} | {tool} | {seconds:.2f} | {rate_text} | {share} | {per_file} | {ratio_text} |"
    )


def compared_rows(
    label: str, results: dict[str, list[float]], files: int, nbytes: int, link_rate: float
) -> list[str]:
    """Return the rows of one measurement: each forge-syncd variant with its ratio to rsync,
    rsync, and each other tool with the first forge-syncd's ratio to it in its name."""
    forges = [name for name in results if name.startswith("forge-syncd")]
    rsync_name = next(name for name in results if name.startswith("rsync"))
    ours = results[forges[0]]
    lines = [
        row(
            label,
            name,
            median(results[name]),
            files,
            nbytes,
            link_rate,
            ratio(results[name], results[rsync_name]),
        )
        for name in forges
    ]
    for name, seconds in results.items():
        if name in forges:
            continue
        tool = name if name == rsync_name else f"{name} (forge/this {ratio(ours, seconds):.2f})"
        lines.append(row(label, tool, median(seconds), files, nbytes, link_rate))
    return lines


class WanBench(Bench):
    """`Bench` whose configs set `sync.connections` (`connections`, None: the default)."""

    connections: str | None = None

    def config(self, name: str, root: Path) -> Path:
        path = super().config(name, root)
        extra = "" if self.connections is None else f", connections: {self.connections}"
        path.write_text(path.read_text().replace('include: ["*"]', f'include: ["*"]{extra}'))
        return path

    def forge_with(self, connections: str | None, root: Path) -> float:
        """Time `forge-syncd --once` on `root` with `sync.connections` set to `connections`."""
        self.connections = connections
        try:
            return self.forge_once(root)[0]
        finally:
            self.connections = None


def daemon_fetch(bench: WanBench, hour: Path, rounds: int, connections: str | None) -> list[float]:
    """Start the daemon on an empty root (live mode off), then per round link a fresh copy
    of the hour-of-output set into it and time the run that fetches it on the daemon's open
    connection (its own duration, from its history record); return the durations."""
    root = bench.work / "remote" / "daemon-root"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    def add_copy(n: int) -> None:
        for source in hour.rglob("*"):
            if source.is_file():
                target = root / f"round-{n}" / source.relative_to(hour)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(source, target)

    bench.connections = connections
    try:
        return daemon_runs(bench, root, rounds, add_copy)
    finally:
        bench.connections = None


def rerun(config: Path) -> float:
    """Run `forge-syncd --once` with `config` (its state kept); return the seconds."""
    return timed([str(BIN / "forge-syncd"), "--once", "--config", str(config)])[0]


def measure_rtt(
    work: Path,
    sshd: SshdServer,
    rtt: float,
    rate: float,
    rounds: int,
    with_rclone: bool,
    sets: list[tuple[str, Path, int, int]],
    cap: float | None = None,
    connections: tuple[str | None, ...] = (None,),
    skip_no_change: bool = False,
) -> list[str]:
    """Run every measurement through a link of `rtt` and `rate` in front of `sshd`, forge-syncd
    once per `connections` setting (None: the config's default); return the table's lines."""
    lines = [
        "| measurement | tool | seconds | MB/s | % of link rate | files/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    end_to_end, _steady = plain_tcp(rtt, rate, cap=cap)
    seconds = PLAIN_TCP_BYTES / (end_to_end * 1e6)
    lines.append(
        row(
            "plain TCP, 100 MiB (connect to last byte)",
            "socket (emulator check)",
            seconds,
            0,
            PLAIN_TCP_BYTES,
            rate,
        )
    )
    with WanLink(sshd.port, rtt, rate, cap) as link:
        bench = WanBench(work, through(sshd, link, work / f"known_hosts-{link.port}"))
        for label, root, files, nbytes in sets:
            runs: Runs = {}
            for setting in connections:
                name = FORGE if setting is None else f"{FORGE}, connections: {setting}"
                runs[name] = lambda r=root, c=setting: bench.forge_with(c, r)
            runs[RSYNC] = lambda r=root: bench.rsync(r)[0]
            if with_rclone:
                runs[RCLONE] = lambda r=root: bench.rclone(r)[0]
            results = alternate(runs, rounds)
            lines += compared_rows(f"initial, {label}", results, files, nbytes, rate)
        hour_label, hour, hour_files, hour_bytes = sets[0]
        raw = median([bench.raw_cat(hour) for _ in range(rounds)])
        lines.append(
            row(f"raw ssh cat, {hour_label}", "ssh (OpenSSH)", raw, hour_files, hour_bytes, rate)
        )
        for setting in connections:
            name = "forge-syncd daemon run" + (
                "" if setting is None else f", connections: {setting}"
            )
            runs_s = daemon_fetch(bench, hour, rounds, setting)
            lines.append(
                row(f"daemon run, {hour_label}", name, median(runs_s), hour_files, hour_bytes, rate)
            )
        if not skip_no_change:
            lines += no_change(bench, work / "remote", rounds, with_rclone, sets, rate)
    return lines


def no_change(
    bench: Bench,
    both: Path,
    rounds: int,
    with_rclone: bool,
    sets: list[tuple[str, Path, int, int]],
    rate: float,
) -> list[str]:
    """Measure a no-change run over both sets: the daemon's poll on its open connection and a
    `--once` re-run, each against rsync's re-run in the same round; return the rows."""
    files = sum(count for _label, _root, count, _bytes in sets)
    label = "no-change, both sets"
    bench.rsync(both)
    rsync_between: list[float] = []
    polls = daemon_runs(
        bench, both, rounds, lambda _n: rsync_between.append(bench.rsync(both, fresh=False)[0])
    )
    lines = [
        row(
            label,
            "forge-syncd daemon poll",
            median(polls),
            files,
            0,
            rate,
            ratio(polls, rsync_between),
        ),
        row(label, "rsync -a re-run (between polls)", median(rsync_between), files, 0, rate),
    ]
    runs: Runs = {
        "forge-syncd --once re-run": lambda: rerun(bench.work / "daemon.yaml"),
        "rsync -a re-run": lambda: bench.rsync(both, fresh=False)[0],
    }
    if with_rclone:
        bench.rclone(both)
        runs["rclone copy re-run"] = lambda: bench.rclone(both, fresh=False)[0]
    return lines + compared_rows(label, alternate(runs, rounds), files, 0, rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="20ms,100ms,250ms", help="round trips, comma-separated")
    parser.add_argument("--rate", default="200mbit", help="link rate each way (200mbit, 25MB)")
    parser.add_argument(
        "--flow-cap", help="also cap each TCP connection at this rate (a lossy path: 50mbit)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=5000, help="files in the small set")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--rclone", action="store_true", help="also run rclone copy (sftp)")
    parser.add_argument("--selftest", action="store_true", help="check the emulator only")
    parser.add_argument(
        "--connections",
        help="forge-syncd once per sync.connections setting, side by side (auto,1); default: the"
        " config's default (auto)",
    )
    parser.add_argument("--sets", default="hour,small", help="data sets to run (hour,small)")
    parser.add_argument("--no-change", choices=("on", "off"), default="on")
    args = parser.parse_args()
    as_installed()
    rtts = [parse_duration(part) for part in args.rtt.split(",")]
    rate = parse_rate(args.rate)
    cap = parse_rate(args.flow_cap) if args.flow_cap else None
    if args.selftest:
        return selftest(rtts, rate, cap)
    with_rclone = args.rclone and shutil.which("rclone") is not None
    if args.rclone and not with_rclone:
        print("rclone is not installed: measuring without it", file=sys.stderr)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="forge-bench-wan-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"generating in {work} ...", file=sys.stderr)
    hour, small = work / "remote" / "hour", work / "remote" / "small"
    hour_files, hour_bytes = hour_of_output(hour)
    small_files, small_bytes = generate(
        small, args.small if "small" in args.sets else 1, 2048, 20480, 2
    )
    sets = [
        ("hour of output", hour, hour_files, hour_bytes),
        ("small files", small, small_files, small_bytes),
    ]
    wanted_sets = args.sets.split(",")
    sets = [sets[0], *([sets[1]] if "small" in wanted_sets else [])]
    connections = tuple(args.connections.split(",")) if args.connections else (None,)
    sshd = SshdServer(work / "sshd").start()
    try:
        for rtt in rtts:
            lines = measure_rtt(
                work,
                sshd,
                rtt,
                rate,
                args.rounds,
                with_rclone,
                sets,
                cap,
                connections,
                args.no_change == "off",
            )
            capped = f", each connection capped at {cap * 8 / 1e6:.0f} Mbit/s" if cap else ""
            print(
                f"\n### {rtt * 1000:.0f} ms RTT, {rate * 8 / 1e6:.0f} Mbit/s{capped} "
                f"({rate / 1e6:.1f} MB/s); {args.rounds} rounds, medians; hour of output "
                f"{hour_files} files {hour_bytes / 1e6:.0f} MB, small files {small_files} "
                f"files {small_bytes / 1e6:.0f} MB\n"
            )
            print("\n".join(lines), flush=True)
    finally:
        sshd.stop()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
