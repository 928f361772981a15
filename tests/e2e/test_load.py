"""Load: the real daemon with 50 containers on 4 private sshd servers, all syncing at once.

It pins completeness under load (every file of every container arrives byte- and
mtime-identical) and catches leaks: open descriptors and RSS must not keep growing over
repeated sync rounds, and an idle daemon must not spin. Speed is not asserted; the figures
(peak RSS, CPU while syncing and idle, descriptors) are written to load.json in
$FORGE_RELIABILITY_DIR for scripts/reliability. Longer runs: scripts/soak.
"""

from __future__ import annotations

import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forge_syncd.control.client import ControlClient
from tests.support.daemon import start_daemon, wait_until
from tests.support.faults import write_reliability
from tests.support.load import LoadRig, ProcSample, cpu_percent, sample

CONTAINERS = 50
SERVERS = 4
FILES = 30
ROUNDS = 3  # sync rounds after the first, each with new files on every container
IDLE_S = 20.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wait_all_synced(rig: LoadRig, since: str, pid: int, samples: list[ProcSample]) -> None:
    """Sample the daemon while waiting (bounded against hangs) for every container's sync
    that started at or after `since` to succeed."""

    def done() -> bool:
        samples.append(sample(pid))
        return rig.all_synced_since(since)

    wait_until(done, timeout=400, what="all 50 containers to finish syncing")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fifty_containers_sync_completely_with_bounded_fds_and_rss(tmp_path: Path) -> None:
    """50 containers (30 files each) over 4 sshd servers, synced by one daemon: every tree
    arrives complete; across three more rounds of new files, open descriptors stay within
    a few of what the first round needed and RSS within 64 MiB of it (a leak per run or per
    file would exceed both); at most ~2 descriptors per container; idle it does not spin."""
    rig = LoadRig(tmp_path, containers=CONTAINERS, servers=SERVERS, files=FILES).start()
    try:
        process = start_daemon(rig.write_config(interval="1h"))
        try:
            pid = process.pid
            started = time.monotonic()
            since = now_iso()
            wait_until(rig.socket.exists, timeout=60, what="the control socket")
            first: list[ProcSample] = [sample(pid)]
            wait_all_synced(rig, since, pid, first)
            first_sync_s = time.monotonic() - started
            assert rig.incomplete() == []
            after_first = sample(pid)

            idle_start = sample(pid)
            time.sleep(IDLE_S)
            idle_end = sample(pid)
            idle_cpu = cpu_percent(idle_start, idle_end)

            rng = random.Random(5)
            rounds: list[dict[str, float]] = []
            for _ in range(ROUNDS):
                for remote in rig.remotes:
                    rig.add_files(remote, 3, rng)
                since = now_iso()
                before = sample(pid)
                with ControlClient(rig.socket) as client:
                    client.call("sync", {}, timeout=60)
                during: list[ProcSample] = [before]
                wait_all_synced(rig, since, pid, during)
                after = sample(pid)
                rounds.append(
                    {
                        "seconds": after.at - before.at,
                        "cpu_percent": cpu_percent(before, after),
                        "fds_after": after.fds,
                        "max_fds": max(s.fds for s in during),
                        "rss_mib_after": after.rss_mib,
                    }
                )
            assert rig.incomplete() == []
            assert process.poll() is None
            final = sample(pid)
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        assert code == 0

        peak_fds = max(s.fds for s in first)
        report = {
            "containers": CONTAINERS,
            "sshd_servers": SERVERS,
            "files_per_container": FILES,
            "files_total": CONTAINERS * (FILES + 3 * ROUNDS),
            "first_sync_s": round(first_sync_s, 2),
            "first_sync_cpu_percent": round(cpu_percent(first[0], first[-1]), 1),
            "peak_rss_mib": round(final.hwm_mib, 1),
            "rss_mib_after_first_sync": round(after_first.rss_mib, 1),
            "rss_mib_final": round(final.rss_mib, 1),
            "fds_peak_first_sync": peak_fds,
            "fds_after_first_sync": after_first.fds,
            "fds_final": final.fds,
            "threads_final": final.threads,
            "idle_cpu_percent": round(idle_cpu, 2),
            "idle_window_s": IDLE_S,
            "rounds": rounds,
            "lost_files": len(rig.incomplete()),
            "note": "measured on a shared 2-core machine while other work ran",
        }
        write_reliability("load.json", report)
        print(report)

        # Leak bounds, loose on purpose: a leak per run (50 per round) or per file breaks them.
        assert after_first.fds <= 2 * CONTAINERS + 40, after_first
        for done in rounds:
            assert done["fds_after"] <= after_first.fds + 10, (done, after_first)
            # Transient: 50 runs started at once by one request hold more at the same
            # moment than the staggered first syncs did; bounded per container, not by them.
            assert done["max_fds"] <= max(peak_fds, 3 * CONTAINERS) + 40, (done, peak_fds)
        assert final.rss_mib <= after_first.rss_mib + 64, (final, after_first)
        assert final.hwm_mib < 1024, final
        # Not a speed claim: a daemon that spins while idle burns a whole core.
        assert idle_cpu < 25.0, idle_cpu
    finally:
        rig.stop()
