"""The soak run behind `scripts/soak`: the real daemon with many containers for a long time.

50 containers (by default) on 4 private sshd servers on 127.0.0.1 sync every 15 s while new
files appear on random containers every few seconds. Every 30 s the daemon's RSS, peak RSS,
open descriptors, threads and CPU are sampled from /proc. At the end the new files must all
have arrived, and the verdict says whether memory and descriptors stayed bounded: the
second half's highest RSS within 10% + 8 MiB of the first half's, its highest descriptor
count within 10 of the first half's. Exit 0 when bounded and nothing was lost, else 1.
Everything runs on this machine and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.daemon import start_daemon, wait_until
from tests.support.load import LoadRig, ProcSample, cpu_percent, sample


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--servers", type=int, default=4, help="private sshd instances")
    parser.add_argument("--files", type=int, default=30, help="files per container at start")
    parser.add_argument("--interval", default="15s", help="each container's sync interval")
    parser.add_argument("--add-every", type=float, default=3.0, help="seconds between new files")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--json", type=Path, help="also write the samples and verdict here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return parser.parse_args(argv)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_files(rig: LoadRig) -> int:
    return sum(1 for path in rig.media.rglob("*.png") if not path.name.startswith("."))


def row(minute: float, s: ProcSample, cpu: float, added: int, synced: int) -> str:
    return (
        f"| {minute:6.1f} | {s.rss_mib:7.1f} | {s.hwm_mib:7.1f} | {s.fds:4d} | {s.threads:4d} "
        f"| {cpu:6.1f} | {added:6d} | {synced:7d} |"
    )


HEADER = (
    "| minute | RSS MiB | peak MiB |  fds | thr. | CPU % |  added |  synced |\n"
    "|---|---|---|---|---|---|---|---|"
)


def verdict(samples: list[ProcSample]) -> tuple[bool, list[str]]:
    """Given the samples (after the first full sync), return (bounded, reasons)."""
    half = len(samples) // 2
    first, second = samples[: max(1, half)], samples[max(1, half) :] or samples[-1:]
    rss_1, rss_2 = max(s.rss_mib for s in first), max(s.rss_mib for s in second)
    fds_1, fds_2 = max(s.fds for s in first), max(s.fds for s in second)
    reasons = [
        f"RSS: highest {rss_1:.1f} MiB in the first half, {rss_2:.1f} MiB in the second "
        f"(bound {rss_1 * 1.1 + 8:.1f})",
        f"open descriptors: highest {fds_1} in the first half, {fds_2} in the second "
        f"(bound {fds_1 + 10})",
    ]
    return rss_2 <= rss_1 * 1.1 + 8 and fds_2 <= fds_1 + 10, reasons


def soak(args: argparse.Namespace, work: Path) -> int:
    rig = LoadRig(work, containers=args.containers, servers=args.servers, files=args.files)
    rig.start()
    rng = random.Random(11)
    process = start_daemon(rig.write_config(interval=args.interval))
    code = 1
    try:
        pid = process.pid
        since = now_iso()
        wait_until(rig.socket.exists, timeout=60, what="the control socket")
        started = time.monotonic()
        wait_until(lambda: rig.all_synced_since(since), timeout=900, what="the first sync")
        print(
            f"first sync of {args.containers} containers x {args.files} files: "
            f"{time.monotonic() - started:.1f} s; soaking {args.minutes:g} min",
            flush=True,
        )
        print(HEADER, flush=True)
        samples = [sample(pid)]
        begin = samples[0].at
        added = 0
        next_add = next_sample = begin
        end = begin + args.minutes * 60
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_add:
                rig.add_files(rng.choice(rig.remotes), rng.randint(1, 3), rng)
                added = sum(r.added for r in rig.remotes)
                next_add += args.add_every
            if now >= next_sample + args.sample_every:
                samples.append(sample(pid))
                next_sample = samples[-1].at
                cpu = cpu_percent(samples[-2], samples[-1])
                minute = (samples[-1].at - begin) / 60
                print(row(minute, samples[-1], cpu, added, local_files(rig)), flush=True)
            if process.poll() is not None:
                print(f"the daemon exited ({process.returncode}) during the soak", flush=True)
                return 1
            time.sleep(0.2)
        print("stopped adding files; waiting for the last ones to arrive", flush=True)
        lost: list[str] = []
        try:
            wait_until(lambda: not rig.incomplete(), timeout=300, what="the last files")
        except AssertionError:
            lost = rig.incomplete()
        last = sample(pid)
        samples.append(last)
        total_cpu = cpu_percent(samples[0], last)
        bounded, reasons = verdict(samples)
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=30)
        expected = args.containers * args.files + added
        print(
            f"\n{added} files added during {args.minutes:g} min; {local_files(rig)} of "
            f"{expected} in the library; containers incomplete: {len(lost)}; average CPU "
            f"{total_cpu:.1f}% of one core; peak RSS {last.hwm_mib:.1f} MiB; "
            f"daemon exit {exit_code} after SIGTERM"
        )
        for reason in reasons:
            print(f"  {reason}")
        ok = bounded and not lost and exit_code == 0
        shown = "BOUNDED" if bounded else "GROWING"
        print(f"VERDICT: {shown}" + ("" if not lost else ", FILES LOST"))
        if args.json:
            report: dict[str, Any] = {
                "minutes": args.minutes,
                "containers": args.containers,
                "files_added": added,
                "incomplete_containers": lost,
                "average_cpu_percent": round(total_cpu, 2),
                "peak_rss_mib": round(last.hwm_mib, 1),
                "bounded": bounded,
                "reasons": reasons,
                "samples": [s.__dict__ for s in samples],
            }
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        code = 0 if ok else 1
        return code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        rig.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="forge-soak-"))
    try:
        return soak(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
