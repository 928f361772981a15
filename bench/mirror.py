"""Measure how the mirror sink should drive rclone: one `rclone copyto` per file, or one
long-lived `rclone rcd` answering `operations/copyfile` per file.

    python -m bench.mirror [--files 60] [--size-kib 200] [--rounds 3] [--workdir DIR]

Makes `--files` random files of `--size-kib` KiB and copies them, one file at a time as the
sink does, to a local-folder remote and to an SFTP remote on a private test sshd
(tests/support/rclone.py). Per file the sink's whole step is timed: copy to a temporary name,
read the copy's hash back, rename it to its final name (`copyto` + `lsjson --hash` +
`moveto`: three processes; or `operations/copyfile` + `operations/stat` + `operations/movefile`:
three HTTP calls to the same rcd). Variants alternate within a round; medians over rounds;
the ratio and the load average are printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.rclone import RCLONE, make_remotes
from tests.support.sshd import SshdServer, free_port


def cli_step(config: Path, source: Path, dest: str) -> None:
    """One file through the CLI: copyto a temporary name, lsjson --hash it, moveto."""
    base = [RCLONE, "--config", str(config)]
    subprocess.run([*base, "copyto", str(source), dest + ".part"], check=True)
    subprocess.run([*base, "lsjson", "--hash", dest + ".part"], check=True, capture_output=True)
    subprocess.run([*base, "moveto", dest + ".part", dest], check=True)


class Rcd:
    """A password-protected rcd on 127.0.0.1 (credentials in its environment)."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.password = secrets.token_hex(16)
        env = {**os.environ, "RCLONE_RC_USER": "bench", "RCLONE_RC_PASS": self.password}
        self.process = subprocess.Popen(
            [RCLONE, "--config", str(config), "rcd", f"--rc-addr=127.0.0.1:{self.port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.auth = "Basic " + base64.b64encode(f"bench:{self.password}".encode()).decode()
        for _ in range(200):
            try:
                self.call("core/version")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rcd did not answer")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{method}",
            data=json.dumps(params).encode(),
            headers={"Content-Type": "application/json", "Authorization": self.auth},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read() or b"{}")
            return result

    def step(self, source: Path, remote: str, name: str) -> None:
        """One file through the rcd: copyfile to a temporary name, stat with hashes, move."""
        self.call(
            "operations/copyfile",
            srcFs=str(source.parent),
            srcRemote=source.name,
            dstFs=remote,
            dstRemote=name + ".part",
        )
        self.call("operations/stat", fs=remote, remote=name + ".part", opt={"showHash": True})
        self.call(
            "operations/movefile",
            srcFs=remote,
            srcRemote=name + ".part",
            dstFs=remote,
            dstRemote=name,
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--size-kib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-mirror-", dir=args.workdir))
    sshd = SshdServer(workdir / "sshd").start()
    try:
        remotes = make_remotes(workdir / "rclone", sshd)
        sources = workdir / "src"
        sources.mkdir()
        files = []
        for index in range(args.files):
            path = sources / f"img-{index:05d}.png"
            path.write_bytes(os.urandom(args.size_kib * 1024))
            files.append(path)
        rcd = Rcd(remotes.cli.config)
        results: dict[tuple[str, str], list[float]] = {}
        try:
            for round_ in range(args.rounds):
                for remote in ("nas:", "sftpnas:"):
                    folder = f"r{round_}"
                    cli = timed(
                        lambda r=remote, f=folder: (
                            [cli_step(remotes.cli.config, p, f"{r}cli-{f}/{p.name}") for p in files]
                            and None
                        )
                    )
                    rc = timed(
                        lambda r=remote, f=folder: (
                            [rcd.step(p, r, f"rcd-{f}/{p.name}") for p in files] and None
                        )
                    )
                    results.setdefault((remote, "copyto"), []).append(cli)
                    results.setdefault((remote, "rcd"), []).append(rc)
        finally:
            rcd.stop()
        load = os.getloadavg()
        print(
            f"{args.files} files x {args.size_kib} KiB, one at a time, {args.rounds} rounds,"
            f" medians; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        print(f"{'remote':10} {'copyto s':>9} {'rcd s':>7} {'files/s':>15} {'ratio':>6}")
        for remote in ("nas:", "sftpnas:"):
            cli = statistics.median(results[(remote, "copyto")])
            rc = statistics.median(results[(remote, "rcd")])
            rates = f"{args.files / cli:.1f} / {args.files / rc:.1f}"
            print(f"{remote:10} {cli:9.2f} {rc:7.2f} {rates:>15} {cli / rc:6.1f}x")
    finally:
        sshd.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
