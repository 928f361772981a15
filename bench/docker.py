"""Benchmark `transport: docker` against `docker cp` of the same folder, side by side.

    python -m bench.docker [--rounds 3] [--big 200x1500] [--small 5000] [--workdir DIR]

Starts a private engine (tests/support/docker.py) and a container of the GNU test image
(with python3) whose /data is a bind mount of generated data: an "hour of output" (`--big`
COUNTxKB files) and a many-small-files set (`--small` files of 2 to 20 KB). Per set and
round, alternately: `docker cp C:/data/SET DEST` into a fresh folder; `forge-syncd --once`
into a fresh library (a new process: start-up, config, manifest, every file verified and
made durable); then a second `forge-syncd --once` on the synced library (the no-change
poll, process start-up included). Prints medians and ratios forge-syncd / `docker cp`.
Issue 27's targets: first sync <= 1.0x docker cp; a no-change poll <= 0.3x.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.compare import generate, median
from tests.support.cli import BIN
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
    sync: {{settle: 0s, watch: false, include: ["*"]}}
"""


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return seconds


def one_round(engine: DockerEngine, container: str, name: str, work: Path) -> list[float]:
    """Return [docker cp s, first sync s, no-change poll s] for set `name`."""
    for leftover in ("cp", "media", "state"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    (work / "cp").mkdir()
    cli = shutil.which("docker") or "/usr/bin/docker"
    copy = timed([cli, "cp", f"{container}:/data/{name}", str(work / "cp")], engine.env())
    config = work / "forge-sync.yaml"
    config.write_text(CONFIG.format(work=work, container=container, set=name, host=engine.host))
    once = [str(BIN / "forge-syncd"), "--once", "--config", str(config)]
    first = timed(once)
    poll = timed(once)
    return [copy, first, poll]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", default="200x1500", help="COUNTxKB")
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
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
        print(f"docker container -> local folder ({args.rounds} rounds, medians)")
        print("| set | docker cp s | forge-syncd --once s | ratio | no-change poll s | ratio |")
        print("|---|---|---|---|---|---|")
        for label, (folder, *_rest) in sets.items():
            work = base / f"work-{folder}"
            work.mkdir()
            rounds = [one_round(engine, box.name, folder, work) for _ in range(args.rounds)]
            copy, first, poll = (median([r[i] for r in rounds]) for i in range(3))
            print(
                f"| {label} | {copy:.3f} | {first:.3f} | {first / copy:.2f} "
                f"| {poll:.3f} | {poll / copy:.2f} |"
            )
    finally:
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
