"""Benchmark `transport: docker` against `docker cp` of the same folder, side by side.

    python -m bench.docker [--rounds 3] [--big 200x1500] [--small 20000] [--workdir DIR]

Starts a private engine (tests/support/docker.py) and a container of the GNU test image
(with python3) whose /data is a bind mount of generated data: an "hour of output" (`--big`
COUNTxKB files) and a many-small-files set (`--small` files of 2 to 20 KB; issue 27 names
20,000). Per set and round, alternately: `docker cp C:/data/SET DEST` into a fresh folder;
`docker cp` then `sync` (the fair peer: forge-syncd's copies are durable, docker cp's are in
the page cache); `forge-syncd --once` into a fresh library (a new process: start-up,
config, manifest, every file verified and made durable); then a second `--once` on the
synced library (the no-change poll with process start-up, for reference); then a daemon on
the set: its first run (the sync it starts with, without process start-up; a fresh library
each round), and in the first round `--rounds` no-change polls on its open connection
(`forge-syncctl sync --wait`, each run's own duration from its history record): the poll
issue 27 means. Prints medians and ratios forge-syncd / `docker cp`. Issue 27's targets:
first sync <= 1.0x docker cp; a no-change poll <= 0.3x.
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
from bench.compare import finished_syncs, generate, median, run_durations, run_seconds
from tests.support.cli import BIN
from tests.support.daemon import wait_until
from tests.support.docker import DockerEngine

CONFIG = """\
media_root: {work}/media
state_dir: {work}/state
log: {{level: warning}}
control: {{socket: {work}/control.sock}}
metrics: {{listen: null}}
containers:
  - name: bench
    transport: docker
    container: {container}
    kind: generic
    root: /data/{set}
    docker: {{host: "{host}"}}
    sync: {{settle: 0s, interval: 1h, watch: false, include: ["*"]}}
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return seconds


def docker_cp(engine: DockerEngine, container: str, name: str, work: Path, durable: bool) -> float:
    """`docker cp` the set into a fresh folder (then `sync` when `durable`); return seconds."""
    shutil.rmtree(work / "cp", ignore_errors=True)
    (work / "cp").mkdir()
    os.sync()
    cli = shutil.which("docker") or "/usr/bin/docker"
    started = time.perf_counter()
    timed([cli, "cp", f"{container}:/data/{name}", str(work / "cp")], engine.env())
    if durable:
        subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def write_config(engine: DockerEngine, container: str, name: str, work: Path) -> Path:
    """A config of one docker container on set `name`, with a fresh library and state."""
    for leftover in ("media", "state"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    config = work / "forge-sync.yaml"
    config.write_text(CONFIG.format(work=work, container=container, set=name, host=engine.host))
    return config


def one_round(
    engine: DockerEngine, container: str, name: str, work: Path, polls: int
) -> tuple[list[float], list[float]]:
    """Return [docker cp s, docker cp + sync s, first sync s, --once no-change s, the
    daemon's first run s] and `polls` no-change daemon runs."""
    copy = docker_cp(engine, container, name, work, durable=False)
    copy_sync = docker_cp(engine, container, name, work, durable=True)
    shutil.rmtree(work / "cp", ignore_errors=True)
    once = [str(BIN / "forge-syncd"), "--once", "--config"]
    config = str(write_config(engine, container, name, work))
    os.sync()
    first = timed([*once, config])
    poll = timed([*once, config])
    daemon_first, daemon_polls = daemon_runs(engine, container, name, work, polls)
    return [copy, copy_sync, first, poll, daemon_first], daemon_polls


def daemon_runs(
    engine: DockerEngine, container: str, name: str, work: Path, rounds: int
) -> tuple[float, list[float]]:
    """Start the daemon on set `name` (fresh library); return its first run's duration and
    `rounds` no-change runs' durations (each the run's own: no process start-up)."""
    config = write_config(engine, container, name, work)
    os.sync()
    process = subprocess.Popen(
        [str(BIN / "forge-syncd"), "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    socket = work / "control.sock"
    try:
        wait_until(socket.exists, timeout=30)
        wait_until(lambda: bool(finished_syncs(socket)), timeout=900)
        return run_seconds(finished_syncs(socket)[-1]), run_durations(socket, rounds)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", default="200x1500", help="COUNTxKB")
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    as_installed()
    count, kib = (int(part) for part in args.big.split("x"))
    base = Path(tempfile.mkdtemp(prefix="bench-docker-", dir=args.workdir))
    engine = DockerEngine().start()
    try:
        data = base / "data"
        sets = {
            f"hour ({count} x ~{kib / 1000:.1f} MB)": ("hour", count, kib * 900, kib * 1100),
            f"{args.small} small": ("small", args.small, 2000, 20000),
        }
        for folder, n, low, high in sets.values():
            generate(data / folder, n, low, high, seed=7)
        box = engine.run(engine.gnu_image(python=True), binds={data: "/data"})
        print(
            f"docker container -> local folder ({args.rounds} rounds, medians; "
            f"load average before: {os.getloadavg()[0]:.2f})"
        )
        print(
            "| set | measurement | docker cp s | cp + sync s | forge-syncd s | ratio to cp |"
            " ratio to cp + sync |"
        )
        print("|---|---|---|---|---|---|---|")
        for label, (folder, *_rest) in sets.items():
            work = base / f"work-{folder}"
            work.mkdir()
            # The daemon's first run in each round (a fresh library); its no-change polls
            # in the first.
            done = [
                one_round(engine, box.name, folder, work, args.rounds if n == 0 else 0)
                for n in range(args.rounds)
            ]
            rounds, polls = [times for times, _ in done], done[0][1]
            copy, copy_sync, first, poll, daemon_first = (
                median([r[i] for r in rounds]) for i in range(5)
            )
            for what, seconds in (
                ("first sync, --once", first),
                ("first sync, daemon run", daemon_first),
                ("no-change poll, daemon run", median(polls)),
                ("no-change poll, --once (start-up included)", poll),
            ):
                print(
                    f"| {label} | {what} | {copy:.3f} | {copy_sync:.3f} | {seconds:.3f} "
                    f"| {seconds / copy:.2f} | {seconds / copy_sync:.2f} |"
                )
            sys.stdout.flush()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
