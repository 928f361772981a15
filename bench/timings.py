"""Wall-clock figures that the tests used to assert and now only the benchmarks measure.

    python -m bench.timings [--only metadata,gil,scrape,rtt,sigterm] [--json]

Tests never assert on elapsed time (a busy machine stretches it); they assert behaviour and
bounded work (CPU seconds, operations, bytes). These are the timings that went with them:
  1. metadata: wall seconds to read each worst-case metadata file (1 MiB of hostile text,
     tests/unit/test_metadata_bounds.py); the test bounds the parsing thread's CPU time.
  2. gil: the longest wait of a thread doing 1 ms sleeps (standing for the control socket)
     while another thread reads every worst case for 3 s, three rounds; of it, the part
     the parser ran while the sleeper was not queued for a CPU. The test bounds the
     longest step between two Python-level calls in the parser's CPU time.
  3. scrape: seconds for a scrape of a /metrics server holding 200 idle connections
     (tests/e2e/test_metrics_http.py).
  4. rtt: the round trip the first channel of an SSH connection measures on loopback
     (tests/sshd/test_windows.py).
  5. sigterm: seconds from SIGTERM to the exit of a daemon with transfers in flight
     (SPEC: within 10 s; tests/e2e/test_daemon.py bounds the bytes that land meanwhile).
The machine's load average is printed with them: compare figures taken at similar loads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Gauge

from forge_syncd.events.metadata import read_generation_info
from forge_syncd.service.metrics import serve
from forge_syncd.transports.ssh.connection import connect, sh_command
from tests.conftest import make_container
from tests.support.cli import write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import write_file
from tests.unit.test_metadata_bounds import WORST_TEXTS, itxt, png

SECTIONS = ("metadata", "gil", "scrape", "rtt", "sigterm")


def worst_files(folder: Path) -> dict[str, Path]:
    """Write every worst case of the metadata tests as a PNG; return {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, (keyword, text) in WORST_TEXTS.items():
        files[name] = folder / f"{name}.png"
        files[name].write_bytes(png(itxt(keyword, text)))
    return files


def metadata(work: Path) -> dict[str, Any]:
    """Wall seconds per worst-case file (the best of 3 reads)."""
    times = {}
    for name, path in worst_files(work / "worst").items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            read_generation_info(bytes(path))
            best = min(best, time.perf_counter() - start)
        times[name] = round(best, 4)
    slowest = max(times, key=lambda name: times[name])
    return {"slowest": slowest, "slowest_s": times[slowest], "per_file_s": times}


class Wait(NamedTuple):
    """One time between two wake-ups of the sleeping thread."""

    wall: float  # seconds from one wake-up to the next (1 ms of it asleep)
    runqueue: float  # of which the OS kept it waiting for a CPU (no GIL hold)
    worker_cpu: float  # CPU seconds the parsing thread ran meanwhile

    @property
    def stall(self) -> float:
        """How long the parser ran while this thread waited, not for the OS."""
        return min(self.wall - self.runqueue, self.worker_cpu)


def runqueue_clock() -> Callable[[], float]:
    """A clock of the seconds the calling thread waited for a CPU (Linux schedstat)."""
    try:
        fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: 0.0
    return lambda: int(os.pread(fd, 200, 0).split()[1]) / 1e9


def waits_while(work: Callable[[], None]) -> list[Wait]:
    """Run `work` here while another thread sleeps 1 ms at a time; return its waits."""
    waits: list[Wait] = []
    worker_clock = time.pthread_getcpuclockid(threading.get_ident())
    started, done = threading.Event(), threading.Event()

    def control() -> None:
        waited = runqueue_clock()
        last = (time.perf_counter(), waited(), time.clock_gettime(worker_clock))
        started.set()
        while not done.is_set():
            time.sleep(0.001)
            now = (time.perf_counter(), waited(), time.clock_gettime(worker_clock))
            waits.append(Wait(*(new - old for new, old in zip(now, last, strict=True))))
            last = now

    thread = threading.Thread(target=control, daemon=True)
    thread.start()
    started.wait()
    try:
        work()
    finally:
        done.set()
        thread.join()
    return waits


def gil(work: Path) -> dict[str, Any]:
    """The longest wait and stall of the sleeping thread, per 3 s round of parsing."""
    files = worst_files(work / "worst-gil")

    def parse_for_a_while() -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < 3.0:
            for path in files.values():
                read_generation_info(bytes(path))

    rounds = []
    for _ in range(3):
        waits = waits_while(parse_for_a_while)
        rounds.append(
            {
                "longest_wait_s": round(max(w.wall for w in waits), 4),
                "longest_stall_s": round(max(w.stall for w in waits), 4),
                "wakeups": len(waits),
            }
        )
    return {"rounds": rounds}


def scrape(_work: Path) -> dict[str, Any]:
    """Seconds for one scrape among 200 idle connections (median of 5)."""
    registry = CollectorRegistry()
    Gauge("forge_test_value", "A value.", registry=registry).set(3)
    server = serve(registry, "127.0.0.1", 0)
    port = server.server_port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    try:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                r.read()
            times.append(time.perf_counter() - start)
    finally:
        for sock in idle:
            sock.close()
        server.shutdown()
        server.server_close()
    return {"median_s": round(statistics.median(times), 4), "max_s": round(max(times), 4)}


def rtt(work: Path) -> dict[str, Any]:
    """The round trip measured on the first channel of 5 loopback connections."""
    sshd = SshdServer(work / "sshd-rtt").start()
    try:
        measured = []
        for _ in range(5):
            connection = connect("127.0.0.1", make_container(sshd, work / "remote-rtt").ssh)
            try:
                connection.run(sh_command(":"))
                assert connection.rtt_s is not None
                measured.append(connection.rtt_s)
            finally:
                connection.close()
    finally:
        sshd.stop()
    return {"median_s": round(statistics.median(measured), 4), "max_s": round(max(measured), 4)}


def sigterm(work: Path) -> dict[str, Any]:
    """Seconds from SIGTERM to exit, a daemon moving 24 MB at 1 MiB/s (2 transfers)."""
    sshd = SshdServer(work / "sshd-term").start()
    base = work / "term"
    remote = base / "remote"
    try:
        for i in range(6):
            write_file(remote / f"video{i}.mp4", os.urandom(4_000_000), 1.7e9)
        config = write_config(base, sshd, remote, interval="1h", bwlimit="1MiB/s", transfers=2)
        library = base / "media" / "forge-a"
        daemon = start_daemon(config)
        wait_until(
            lambda: any(p.name.endswith(".part") for p in library.glob(".*")),
            what="a transfer in flight",
        )
        start = time.perf_counter()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=120)
        took = time.perf_counter() - start
    finally:
        sshd.stop()
    return {"exit_code": code, "seconds": round(took, 3)}


RUNS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "metadata": metadata,
    "gil": gil,
    "scrape": scrape,
    "rtt": rtt,
    "sigterm": sigterm,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timings", description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in RUNS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-timings-") as folder:
        for name in chosen:
            work = Path(folder) / name
            work.mkdir()
            report[name] = RUNS[name](work)
            if not args.json:
                shown = {k: v for k, v in report[name].items() if k != "per_file_s"}
                print(f"{name:9s} {json.dumps(shown)}", flush=True)
    report["load_after"] = os.getloadavg()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(f"load     before {report['load_before']}, after {report['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
