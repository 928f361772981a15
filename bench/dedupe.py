"""Benchmark the remote-hash shortcut (`sync.dedupe_min_size`): a container whose new output is
one third (by bytes) copies of files the library already holds, synced with the shortcut
and without it, side by side.

    python -m bench.dedupe [--rtt 50ms] [--rate 200mbit] [--rounds 3] [--xfs] [--workdir DIR]

Starts its own sshd on 127.0.0.1. The library is primed, each run, from a local folder
(`transport: local`, 6 files of 8-10 MB: no link involved); then `forge-syncd --once` syncs
the container (12 new files of 8-10 MB and copies of the 6 library files) through a
`WanLink` (tests/support/wan.py: RTT and rate), once with `dedupe_min_size: 8MiB` (the
default: the copies are hashed on the container and made from the library) and once with
it at 1 TiB (everything crosses the link). The same again through a link of 0 ms and
10 GB/s ("loopback": the proxy only counts the bytes). Per link: median seconds and bytes
that crossed the link (server to client) over `--rounds` rounds, the variants alternating,
and the ratio with/without. `--xfs` puts the library on a loop-mounted XFS (reflinks; root
only), else it is in the work folder's filesystem (the shortcut then copies locally).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench import as_installed
from bench.compare import generate, timed
from bench.wan import parse_duration, parse_rate
from tests.support.cli import BIN
from tests.support.reflink import LoopFilesystem
from tests.support.sshd import SshdServer
from tests.support.wan import WanLink, through

MB = 1_000_000
CONFIG = """\
media_root: {media}
state_dir: {state}
log: {{level: warning}}
control: {{socket: {work}/control.sock}}
metrics: {{listen: null}}
library: {{dedupe: auto}}
defaults:
  ssh: {{user: {user}, identity_file: {key}, known_hosts: {known}, port: {port}}}
  sync: {{settle: 0s, interval: 1h, include: ["*"], dedupe_min_size: {min_size}}}
containers:
  - {{name: lib, transport: local, kind: generic, root: {lib}}}
  - {{name: box, kind: generic, host: 127.0.0.1, root: {box}}}
"""
VARIANTS = {"with the shortcut": "8MiB", "without": "1TiB"}


def data_sets(work: Path) -> tuple[Path, Path, int, int]:
    """Write the library's folder and the container's (its new files, then copies of the
    library's); return both and the container's (bytes, duplicate bytes)."""
    lib, box = work / "lib-root", work / "box-root"
    generate(lib, 6, 8 * MB, 10 * MB, 21)
    _, new_bytes = generate(box / "new", 12, 8 * MB, 10 * MB, 22)
    copies = 0
    for path in sorted(lib.rglob("*.png")):
        target = box / "again" / path.relative_to(lib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copies += path.stat().st_size
    return lib, box, new_bytes + copies, copies


def one_run(
    work: Path, library: Path, sshd: SshdServer, roots: tuple[Path, Path], rtt: float,
    rate: float, min_size: str,
) -> tuple[float, int]:  # fmt: skip
    """Prime a fresh library from the local folder, then sync the container through a new
    link; return (seconds of that sync, bytes the link carried to us)."""
    shutil.rmtree(library, ignore_errors=True)
    library.mkdir(parents=True)
    with WanLink(sshd.port, rtt, rate) as link:
        view = through(sshd, link, work / "known_hosts-link")
        config = work / "dedupe.yaml"
        config.write_text(
            CONFIG.format(
                media=library / "media",
                state=library / "state",
                work=work,
                user=view.user,
                key=view.client_key,
                known=view.known_hosts,
                port=view.port,
                min_size=min_size,
                lib=roots[0],
                box=roots[1],
            )
        )
        once = [str(BIN / "forge-syncd"), "--once", "--config", str(config), "--container"]
        timed([*once, "lib"])
        seconds = timed([*once, "box"])[0]
        carried = sum(connection.down.nbytes for connection in link.stats)
    return seconds, carried


def measure(
    work: Path, library: Path, sshd: SshdServer, roots: tuple[Path, Path], rtt: float,
    rate: float, rounds: int,
) -> dict[str, list[tuple[float, int]]]:  # fmt: skip
    """Run both variants `rounds` times, alternating (who goes first alternates too)."""
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in VARIANTS}
    for n in range(rounds):
        order = list(VARIANTS) if n % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            results[name].append(one_run(work, library, sshd, roots, rtt, rate, VARIANTS[name]))
    return results


def table(label: str, results: dict[str, list[tuple[float, int]]], total: int) -> list[str]:
    seconds = {name: statistics.median(s for s, _ in runs) for name, runs in results.items()}
    carried = {name: statistics.median(b for _, b in runs) for name, runs in results.items()}
    ratios = [
        with_ / without
        for (with_, _), (without, _) in zip(
            results["with the shortcut"], results["without"], strict=True
        )
    ]
    lines = [f"\n### {label}\n", "| variant | seconds | MB over the link | MB/s of output |"]
    lines.append("|---|---:|---:|---:|")
    for name in VARIANTS:
        lines.append(
            f"| {name} | {seconds[name]:.2f} | {carried[name] / MB:.1f} |"
            f" {total / MB / seconds[name]:.1f} |"
        )
    lines.append(
        f"\ntime with/without (median of per-round ratios): {statistics.median(ratios):.2f}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedupe", description=__doc__)
    parser.add_argument("--rtt", default="50ms", help="round trip of the WAN link")
    parser.add_argument("--rate", default="200mbit", help="rate of the WAN link")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--xfs", action="store_true", help="the library on a loop-mounted XFS")
    parser.add_argument("--workdir", type=Path, help="keep the work here (default: a temp dir)")
    args = parser.parse_args(argv)
    as_installed()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="forge-bench-dedupe-"))
    work.mkdir(parents=True, exist_ok=True)
    filesystem = LoopFilesystem("xfs", size_mb=1024).start() if args.xfs else None
    library = (filesystem.mountpoint if filesystem else work) / "library"
    sshd = SshdServer(work / "sshd").start()
    try:
        lib, box, total, copies = data_sets(work)
        print(f"container: {total / MB:.0f} MB, of which {copies / MB:.0f} MB copies of"
              f" library files; library on {'XFS (reflinks)' if filesystem else 'the work folder'};"
              f" load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        rtt, rate = parse_duration(args.rtt), parse_rate(args.rate)
        links = [(f"WAN {args.rtt} RTT, {args.rate}", rtt, rate), ("loopback", 0.0, 10e9)]
        for label, link_rtt, link_rate in links:
            results = measure(work, library, sshd, (lib, box), link_rtt, link_rate, args.rounds)
            print("\n".join(table(label, results, total)))
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        sshd.stop()
        if filesystem is not None:
            filesystem.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
