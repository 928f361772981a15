"""Benchmark live mode (issue #17): how soon a new image lands, and what an idle watcher costs.

    python -m bench.live [--rtt 100ms] [--rate 200mbit] [--files 24]
                         [--backends inotifywait,python3,find] [--settle 5s]
                         [--cpu-files 10000,100000] [--cpu-seconds 60]
                         [--skip-latency] [--skip-cpu] [--out DIR] [--seed 17]
    python -m bench.live --selftest   (3 files per run, 1,000 files idle for 5 s)

Starts one test sshd per watcher (tests/support/sshd.py), the tools of the watchers before it
made to fail (`hostile.disabled`: inotifywait for python3, inotifywait and python3 for find).
A `ContainerRunner` in this process plays the daemon (there is no scheduler: the interval is
1 h and never fires, so only the watcher can sync a new file).

1. Latency. Per run a fresh remote root, library and state, and a `WanLink` (`--rtt`,
   `--rate`) in a process of its own, so the emulator does not share this process's GIL. A
   writer puts `--files` 1.5 MB random-byte `.png` files into a folder of the root at random
   moments (gaps of 0.5-3 s): A1111's way (`name.png.tmp`, then `os.replace` to `name.png`),
   or ComfyUI's (the final name written in 3 pieces, 50 ms apart). A file's latency runs
   from the `os.replace` (ComfyUI: the close) to the moment a 5 ms poll of `os.path.exists`
   sees the library copy under its final name: the commit renames a fetched file into place
   only after its bytes were fsynced, so from then on the data is on disk. The `recorded`
   columns run to the `file_synced` log record instead: the folder fsynced and the manifest
   transaction committed (the name durable too). Stages along the way are stamped by a
   `SshTransport` subclass (watcher record read, fetch called, first byte, temp file complete)
   and the run log (`sync_started`). For comparison the same writer runs against plain
   polling: `runner.run("sync")` every 2 s with the watcher off, with the same settle and
   with settle 0 (a full run leaves a file younger than `settle` for a later run).
2. Idle CPU. `--cpu-files` tiny files spread over 100 folders; per watcher,
   `SshTransport(container).watch()` over a direct connection, waited on until it is established
   (its `h` record), then the CPU time (utime + stime, plus reaped children's) of every
   process in the watcher's session (sshd starts each channel's command in a session of its
   own) over `--cpu-seconds`, while the stream is read. Resolution: one clock tick (10 ms).
3. The machine's load (os.getloadavg) at start, at each latency run, and at the end, and
   the versions of what ran.
Targets at 100 ms RTT: p50 <= 0.6 s and p95 <= 1.5 s; idle inotify < 0.1% of a core at 100k
files, the find detector <= 5%.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

import paramiko

import forge_syncd
from bench.wan import parse_duration, parse_rate
from forge_syncd.config.model import ContainerConfig, Schedule, SshConfig, SyncConfig
from forge_syncd.library.manifest import Manifest
from forge_syncd.logs import configure
from forge_syncd.remote.transport import WatchFeed
from forge_syncd.remote.types import (
    FetchCallbacks,
    Fetched,
    FetchItem,
    FetchReport,
    WatchRecord,
)
from forge_syncd.service.runner import ContainerRunner
from forge_syncd.transports.ssh.transport import SshTransport
from tests.support.hostile import disabled
from tests.support.sshd import SshdServer

REPO = Path(__file__).resolve().parents[1]
NAME = "bench"
FOLDER = "txt2img-images/2026-12-01"  # where the writer puts its files, inside the root
IMAGE_BYTES = 1_500_000
GAP_S = (0.5, 3.0)
POLL_EVERY_S = 2.0
EXISTS_STEP_S = 0.005
ARRIVAL_TIMEOUT_S = 60.0  # after the last write
START_TIMEOUT_S = 120.0
CPU_FOLDERS = 100
P50_TARGET_S, P95_TARGET_S = 0.6, 1.5
INOTIFY_CPU_TARGET, FIND_CPU_TARGET = 0.1, 5.0  # % of one core
# Over SSH the watcher pushes small files, so python3 (the one that pushes) comes first.
BACKENDS = {
    "inotifywait": ("python3",),
    "python3": (),
    "find": ("inotifywait", "python3"),
}
# Stages of a file's way, in order, each stamped in seconds since the epoch.
STAGES = ("record", "run_start", "fetch_call", "first_byte", "fetched", "exists", "recorded")
LINK_SCRIPT = """\
import sys
from tests.support.wan import WanLink
link = WanLink(int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])).start()
print(link.port, flush=True)
sys.stdin.read()
link.stop()
"""


@dataclass(frozen=True)
class RunSpec:
    """One latency run: `mode` live (watcher) or poll (every 2 s, watcher off), the watcher
    expected (`backend`, also naming the sshd), the writer's `pattern` (a1111, comfyui)."""

    label: str
    mode: str
    backend: str
    pattern: str
    settle_s: float


@dataclass
class RunResult:
    """What one latency run measured: per file its write time and stage stamps."""

    spec: RunSpec
    backend_seen: str
    load1: float
    written: dict[str, float] = field(default_factory=dict)
    stamps: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> name -> ts

    def after_write(self, stage: str) -> list[float]:
        """Return, for each file that reached `stage`, the seconds from its write to it."""
        seen = self.stamps.get(stage, {})
        return [seen[name] - at for name, at in self.written.items() if name in seen]


@dataclass(frozen=True)
class CpuResult:
    """One idle watcher: established after `setup_s`; `cpu_s` used over `seconds`."""

    backend: str
    files: int
    setup_s: float
    processes: int
    cpu_s: float
    seconds: float

    @property
    def percent(self) -> float:
        return self.cpu_s / self.seconds * 100


class Marks:
    """First-seen time stamps per stage and remote path (as text); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stamps: dict[str, dict[str, float]] = {}

    def first(self, stage: str, path: bytes, at: float) -> None:
        """Given a stage, a remote path and a time, keep the time unless one is kept."""
        with self._lock:
            self.stamps.setdefault(stage, {}).setdefault(os.fsdecode(path), at)


class TimedFeed:
    """A `WatchFeed` that stamps when each file's first record was read."""

    def __init__(self, feed: WatchFeed, marks: Marks) -> None:
        self.feed = feed
        self.marks = marks

    @property
    def backend(self) -> str:
        return self.feed.backend

    @property
    def received(self) -> int:
        return self.feed.received

    def read(self, timeout: float) -> tuple[list[WatchRecord], list[str]]:
        """As `WatchFeed.read`; each record naming a file is stamped `record`."""
        records, problems = self.feed.read(timeout)
        now = time.time()
        for record in records:
            if record.file is not None:
                self.marks.first("record", record.file.path, now)
        return records, problems

    def close(self) -> None:
        self.feed.close()


class TimedRemote(SshTransport):
    """The real `SshTransport`, stamping each file's fetch call, first byte and arrival (its
    temporary file written and fsynced), and wrapping its watcher in a `TimedFeed`."""

    def __init__(self, container: ContainerConfig, marks: Marks) -> None:
        super().__init__(container)
        self.marks = marks

    def watch(self) -> WatchFeed:
        return TimedFeed(super().watch(), self.marks)

    def fetch(
        self, items: Sequence[FetchItem], calls: FetchCallbacks, cancel: threading.Event
    ) -> FetchReport:
        """As `SshTransport.fetch`, stamping `fetch_call`, `first_byte` and `fetched`."""
        now = time.time()
        for item in items:
            self.marks.first("fetch_call", item.remote.path, now)

        def started(item: FetchItem) -> None:
            self.marks.first("first_byte", item.remote.path, time.time())
            calls.on_start(item)

        def fetched(result: Fetched) -> None:
            self.marks.first("fetched", result.item.remote.path, time.time())
            calls.on_fetched(result)

        return super().fetch(items, replace(calls, on_start=started, on_fetched=fetched), cancel)


class LinkProcess:
    """A `WanLink` (tests/support/wan.py) in front of 127.0.0.1:`target_port`, run in a
    child process; `start()` returns self with `port` set, `stop()` ends it."""

    def __init__(self, target_port: int, rtt_s: float, rate_bps: float) -> None:
        self.argv = [sys.executable, "-c", LINK_SCRIPT, str(target_port), str(rtt_s)]
        self.argv.append(str(rate_bps))
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> LinkProcess:
        """Start the link; return self once it listens. Raise RuntimeError if it did not."""
        self.process = subprocess.Popen(
            self.argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("the WAN link process did not start")
        self.port = int(line)
        return self

    def stop(self) -> None:
        """End the link process (its stdin closes; killed after 10 s)."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class Arrivals:
    """Polls expected library paths every 5 ms in a thread; stamps when each exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}  # local path -> name
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)

    def start(self) -> Arrivals:
        self._thread.start()
        return self

    def expect(self, name: str, local: Path) -> None:
        """Watch for `local` (the library copy of remote file `name`) to appear."""
        with self._lock:
            self._pending[str(local)] = name

    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def _run(self) -> None:
        while not self._stop.wait(EXISTS_STEP_S):
            with self._lock:
                pending = list(self._pending.items())
            for local, name in pending:
                if os.path.exists(local):
                    now = time.time()
                    with self._lock:
                        self.seen[name] = now
                        del self._pending[local]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def quiet_logs(level: str, file: Path | None, quiet: TextIO) -> None:
    """Log at `level` to `file` (None: no file) and to `quiet`, as the daemon does, but let
    an exception that ends the bench or a thread print its traceback, not go to the log."""
    configure(level, file, quiet)
    sys.excepthook = sys.__excepthook__
    threading.excepthook = threading.__excepthook__


def container_config(
    sshd: SshdServer, port: int, known_hosts: Path, root: Path, watch: bool, settle_s: float
) -> ContainerConfig:
    """Return a config for the container `root` reached at 127.0.0.1:`port` with `sshd`'s
    user and key and the host key in `known_hosts`; interval 1 h, the given watch and
    settle."""
    return ContainerConfig(
        name=NAME,
        kind="generic",
        host="127.0.0.1",
        root=str(root),
        folders=(),
        ssh=SshConfig(
            user=sshd.user,
            port=port,
            identity_file=sshd.client_key,
            known_hosts=known_hosts,
            connect_timeout_s=15.0,
        ),
        sync=SyncConfig(schedule=Schedule(interval_s=3600.0), settle_s=settle_s, watch=watch),
    )


def link_known_hosts(sshd: SshdServer, port: int, path: Path) -> Path:
    """Write to `path` a known_hosts line naming `sshd`'s host key at `port`; return it."""
    keytype, blob = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    path.write_text(f"[127.0.0.1]:{port} {keytype} {blob}\n")
    return path


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 50 ms; raise RuntimeError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def a1111_write(path: Path, data: bytes) -> float:
    """Write `data` as A1111/Forge does (a `.tmp` name, then `os.replace`); return when the
    final name appeared."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
    return time.time()


def comfyui_write(path: Path, data: bytes) -> float:
    """Write `data` as ComfyUI does (the final name, in 3 pieces 50 ms apart); return when
    the file was closed."""
    piece = math.ceil(len(data) / 3)
    with path.open("wb") as out:
        for start in range(0, len(data), piece):
            out.write(data[start : start + piece])
            out.flush()
            time.sleep(0.05)
    return time.time()


def write_files(
    folder: Path, local: Path, count: int, write: Callable[[Path, bytes], float], seed: int
) -> tuple[dict[str, float], Arrivals]:
    """Write `count` images into `folder` at random gaps, each awaited under `local`; return
    {remote name: write time} and the running `Arrivals`."""
    rng = random.Random(seed)
    arrivals = Arrivals().start()
    written: dict[str, float] = {}
    for index in range(count):
        data = b"\x89PNG\r\n\x1a\n" + os.urandom(IMAGE_BYTES - 8)
        name = f"{index:05d}-{rng.randrange(10**9)}.png"
        time.sleep(rng.uniform(*GAP_S))
        arrivals.expect(f"{FOLDER}/{name}", local / name)
        written[f"{FOLDER}/{name}"] = write(folder / name, data)
    return written, arrivals


def log_stamps(log: Path) -> dict[str, dict[str, float]]:
    """Given a run's JSON log, return {"run_start": {path: ts}, "recorded": {path: ts}}:
    when the run that synced each file started, and when its `file_synced` was logged."""
    started: dict[str, float] = {}
    synced: list[tuple[str, str, float]] = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        ts = datetime.fromisoformat(record["ts"]).timestamp()
        if record["event"] == "sync_started":
            started[record["run_id"]] = ts
        elif record["event"] == "file_synced":
            synced.append((record["path"], record["run_id"], ts))
    stamps: dict[str, dict[str, float]] = {"run_start": {}, "recorded": {}}
    for path, run_id, ts in synced:
        stamps["recorded"].setdefault(path, ts)
        if run_id in started:
            stamps["run_start"].setdefault(path, started[run_id])
    return stamps


def poll_loop(runner: ContainerRunner, stop: threading.Event) -> None:
    """Run a full sync every POLL_EVERY_S (start to start) until `stop` is set."""
    while not stop.is_set():
        started = time.monotonic()
        runner.run("sync")
        stop.wait(max(0.0, started + POLL_EVERY_S - time.monotonic()))


def latency_run(
    spec: RunSpec,
    sshd: SshdServer,
    args: argparse.Namespace,
    work: Path,
    out: Path,
    quiet: TextIO,
) -> RunResult:
    """Run one latency measurement (see the module docstring) through a fresh link to
    `sshd`; return its result. Its debug log goes to `out` (and stderr to `quiet`). Raise
    RuntimeError when the runner never got ready."""
    place = work / spec.label.replace(" ", "-").replace(",", "")
    root = place / "remote"
    (root / FOLDER).mkdir(parents=True)
    log = out / f"{place.name}.log.jsonl"
    quiet_logs("debug", log, quiet)
    link = LinkProcess(sshd.port, args.rtt, args.rate).start()
    known = link_known_hosts(sshd, link.port, place / "known_hosts")
    config = container_config(sshd, link.port, known, root, spec.mode == "live", spec.settle_s)
    marks = Marks()
    manifest = Manifest.open(place / "state")
    runner = ContainerRunner(
        config, os.fsencode(place / "media"), manifest, remote=TimedRemote(config, marks)
    )
    stop = threading.Event()
    poller = threading.Thread(target=poll_loop, args=(runner, stop), daemon=True)
    try:
        if spec.mode == "live":
            runner.start_watch(
                lambda: threading.Thread(target=runner.run, args=("sync",), daemon=True).start()
            )
            wait_for(lambda: runner.watch_state == "watching", START_TIMEOUT_S, "the watcher")
        else:
            poller.start()
        wait_for(lambda: "sync" in runner.results.last, START_TIMEOUT_S, "the first full run")
        backend = runner.live.backend if runner.live is not None else "-"
        result = RunResult(spec, backend, os.getloadavg()[0])
        write = a1111_write if spec.pattern == "a1111" else comfyui_write
        local = place / "media" / NAME / FOLDER
        result.written, arrivals = write_files(root / FOLDER, local, args.files, write, args.seed)
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while arrivals.waiting() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the last commit's log record
        arrivals.stop()
    finally:
        stop.set()
        runner.retire()
        if runner.live is not None:
            runner.live.join(10)
        if poller.is_alive():
            poller.join(30)
        runner.close()
        manifest.close()
        link.stop()
    quiet_logs("warning", None, quiet)
    result.stamps = {**marks.stamps, **log_stamps(log), "exists": arrivals.seen}
    return result


def make_tree(root: Path, count: int) -> None:
    """Create `count` empty `.png` files spread over CPU_FOLDERS folders under `root`."""
    for index in range(count):
        folder = root / f"{index % CPU_FOLDERS:03d}"
        if index < CPU_FOLDERS:
            folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / f"{index:07d}.png", os.O_CREAT | os.O_WRONLY, 0o644))


def proc_stat(pid: str) -> tuple[int, int]:
    """Return (session id, CPU ticks: utime + stime + cutime + cstime) of process `pid`.
    Raise OSError when it is gone."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[3]), sum(int(value) for value in fields[11:15])


def session_ticks(sid: int) -> tuple[int, int]:
    """Return (processes, CPU ticks) of every process in session `sid`. A child that ended
    and was reaped counts in its parent's cutime/cstime, so the difference of two samples is
    the session's CPU time between them."""
    processes = ticks = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            session, used = proc_stat(pid)
        except (OSError, IndexError, ValueError):
            continue
        if session == sid:
            processes += 1
            ticks += used
    return processes, ticks


def watcher_pids(root: Path) -> list[str]:
    """Return the pids whose command line holds the watcher script's `cd -- <root>`."""
    marker = os.fsencode(f"cd -- {shlex.quote(str(root))} ||")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if marker in handle.read():
                    found.append(pid)
        except OSError:
            continue
    return found


def cpu_run(sshd: SshdServer, backend: str, root: Path, files: int, seconds: float) -> CpuResult:
    """Start the watcher over `root` through `sshd`, wait for its `h` record, then measure
    its session's CPU time over `seconds` while reading its stream; return the result.
    Raise RuntimeError if it is not established in time or its processes are not found."""
    config = container_config(sshd, sshd.port, sshd.known_hosts, root, True, 5.0)
    box = SshTransport(config)
    started = time.monotonic()
    feed = box.watch()
    try:
        while not feed.backend:
            if time.monotonic() - started > START_TIMEOUT_S:
                raise RuntimeError(f"the {backend} watcher was not established")
            feed.read(1.0)
        setup = time.monotonic() - started
        pids = watcher_pids(root)
        if not pids:
            raise RuntimeError(f"no process of the {backend} watcher found")
        sid = proc_stat(pids[0])[0]
        _, before = session_ticks(sid)
        begun = time.monotonic()
        while (left := begun + seconds - time.monotonic()) > 0:
            feed.read(min(1.0, left))
        processes, after = session_ticks(sid)
        elapsed = time.monotonic() - begun
    finally:
        feed.close()
        box.close()
    wait_for(lambda: not watcher_pids(root), 30, f"the {backend} watcher to end")
    cpu_s = (after - before) / os.sysconf("SC_CLK_TCK")
    return CpuResult(feed.backend, files, setup, processes, cpu_s, elapsed)


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile `share` (0.95: p95) of `values` (NaN if none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_lines(results: list[RunResult]) -> list[str]:
    """Return the latency table (seconds from the write) and the stage table (medians)."""
    lines = [
        "| run | watcher | arrived | p50 s | p95 s | max s | recorded p50 | p95 | max "
        "| target | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        exists, recorded = result.after_write("exists"), result.after_write("recorded")
        p50, p95 = percentile(exists, 0.5), percentile(exists, 0.95)
        met = len(exists) == len(result.written) and p50 <= P50_TARGET_S and p95 <= P95_TARGET_S
        lines.append(
            f"| {result.spec.label} | {result.backend_seen} "
            f"| {len(exists)}/{len(result.written)} | {p50:.3f} | {p95:.3f} "
            f"| {max(exists, default=math.nan):.3f} | {percentile(recorded, 0.5):.3f} "
            f"| {percentile(recorded, 0.95):.3f} | {max(recorded, default=math.nan):.3f} "
            f"| {'met' if met else 'MISSED'} | {result.load1:.2f} |"
        )
    lines += [
        "",
        "Median seconds from the write to each stage (record: the watcher's first record read"
        " here; run start: `sync_started` of the run that synced it; fetch call; first byte;"
        " fetched: temp file complete and fsynced; exists: under its final name; recorded:"
        " `file_synced`):",
        "",
        "| run | " + " | ".join(STAGES) + " |",
        "|---|" + "---|" * len(STAGES),
    ]
    for result in results:
        cells = []
        for stage in STAGES:
            values = result.after_write(stage)
            cells.append(f"{statistics.median(values):.3f}" if values else "-")
        lines.append(f"| {result.spec.label} | " + " | ".join(cells) + " |")
    return lines


def cpu_lines(results: list[CpuResult]) -> list[str]:
    """Return the idle CPU table."""
    lines = [
        "| watcher | files | established after s | processes | CPU s | over s | % of a core "
        "| target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        limit = FIND_CPU_TARGET if result.backend == "find" else INOTIFY_CPU_TARGET
        below = result.percent <= limit if result.backend == "find" else result.percent < limit
        lines.append(
            f"| {result.backend} | {result.files:,} | {result.setup_s:.2f} | {result.processes} "
            f"| {result.cpu_s:.2f} | {result.seconds:.1f} | {result.percent:.3f}% "
            f"| {'met' if below else 'MISSED'} (limit {limit}%) |"
        )
    return lines


def tool_version(argv: list[str]) -> str:
    """Return the first line `argv` prints (stdout or stderr), or `missing`."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def versions() -> str:
    """Return one line naming the versions of what the bench runs."""
    parts = [
        f"forge-syncd {forge_syncd.__version__}",
        f"python {sys.version.split()[0]}",
        f"paramiko {paramiko.__version__}",
        tool_version(["ssh", "-V"]),
        tool_version(["inotifywait", "--help"]),
        "remote " + tool_version(["/usr/bin/python3", "--version"]),
        tool_version(["find", "--version"]),
        f"kernel {os.uname().release}",
        f"{os.cpu_count()} CPUs",
    ]
    return "; ".join(parts)


def start_servers(names: list[str], work: Path) -> dict[str, SshdServer]:
    """Start one sshd per watcher in `names`, the watchers before it disabled; return them."""
    servers = {}
    for backend in names:
        missing = BACKENDS[backend]
        dirs = [disabled(work / f"bin-{backend}", *missing)] if missing else []
        servers[backend] = SshdServer(work / f"sshd-{backend}", path_dirs=dirs).start()
    return servers


def latency_specs(backends: list[str], settle_s: float) -> list[RunSpec]:
    """Return the latency runs: A1111 per watcher, ComfyUI with python3, two polling runs."""
    specs = [RunSpec(f"live {name}, A1111", "live", name, "a1111", settle_s) for name in backends]
    if "python3" in backends:
        specs.append(RunSpec("live python3, ComfyUI", "live", "python3", "comfyui", settle_s))
    poll = backends[0]
    specs.append(RunSpec(f"poll 2 s, settle {settle_s:g} s", "poll", poll, "a1111", settle_s))
    if settle_s:
        specs.append(RunSpec("poll 2 s, settle 0 s", "poll", poll, "a1111", 0.0))
    return specs


def run_latency(
    args: argparse.Namespace,
    servers: dict[str, SshdServer],
    work: Path,
    out: Path,
    quiet: TextIO,
) -> tuple[list[RunResult], bool]:
    """Run every latency measurement; print and save its tables; return the results and
    whether every file arrived and each live run used the watcher it should."""
    results = []
    for spec in latency_specs(args.backends, args.settle):
        print(f"latency: {spec.label} ...", file=sys.stderr, flush=True)
        results.append(latency_run(spec, servers[spec.backend], args, work, out, quiet))
    print(
        f"\n### Latency, {args.rtt * 1000:.0f} ms RTT, {args.rate * 8 / 1e6:.0f} Mbit/s, "
        f"{args.files} files of {IMAGE_BYTES / 1e6:.1f} MB, gaps {GAP_S[0]}-{GAP_S[1]} s, "
        f"settle {args.settle:g} s (seconds from the write to the library copy; nearest-rank "
        f"percentiles; target p50 <= {P50_TARGET_S} s, p95 <= {P95_TARGET_S} s)\n"
    )
    print("\n".join(latency_lines(results)), flush=True)
    (out / "latency.json").write_text(
        json.dumps([asdict(result) for result in results], indent=1, default=str)
    )
    ok = all(
        len(result.after_write("exists")) == len(result.written)
        and result.backend_seen in (result.spec.backend, "-")
        for result in results
    )
    return results, ok


def run_cpu(
    args: argparse.Namespace, servers: dict[str, SshdServer], work: Path, out: Path
) -> tuple[list[CpuResult], bool]:
    """Measure each watcher idle over each tree size; print and save the table; return the
    results and whether each watcher was the one expected."""
    results = []
    for count in args.cpu_files:
        root = work / f"cpu-{count}"
        make_tree(root, count)
        for backend in args.backends:
            print(f"idle CPU: {backend}, {count:,} files ...", file=sys.stderr, flush=True)
            results.append(cpu_run(servers[backend], backend, root, count, args.cpu_seconds))
    tick = 1 / os.sysconf("SC_CLK_TCK")
    print(
        f"\n### Idle watcher CPU over {args.cpu_seconds:g} s ({CPU_FOLDERS} folders; every "
        f"process of the watcher's session; one tick = {tick:g} s)\n"
    )
    print("\n".join(cpu_lines(results)), flush=True)
    (out / "cpu.json").write_text(json.dumps([asdict(result) for result in results], indent=1))
    ok = [result.backend for result in results] == [
        backend for _ in args.cpu_files for backend in args.backends
    ]
    return results, ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring); return the options, converted."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rtt", default="100ms", help="round trip of the emulated link")
    parser.add_argument("--rate", default="200mbit", help="link rate each way (200mbit, 25MB)")
    parser.add_argument("--files", type=int, default=24, help="images written per latency run")
    parser.add_argument("--backends", default="inotifywait,python3,find")
    parser.add_argument("--settle", default="5s", help="the container's settle")
    parser.add_argument("--cpu-files", default="10000,100000", help="tree sizes, comma-separated")
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--selftest", action="store_true", help="3 files; 1,000 files for 5 s")
    parser.add_argument("--out", type=Path, help="keep per-file times, tables and logs here")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    args.rtt = parse_duration(args.rtt)
    args.rate = parse_rate(args.rate)
    args.settle = parse_duration(args.settle)
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown or not args.backends:
        parser.error(f"--backends: choose from {', '.join(BACKENDS)}")
    args.cpu_files = [int(part.replace("_", "")) for part in args.cpu_files.split(",")]
    if args.selftest:
        args.files, args.cpu_files, args.cpu_seconds = 3, [1000], 5.0
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; return 0 when every file arrived and every watcher was the expected
    one (targets missed are reported, not failed), else 1."""
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="forge-bench-live-"))
    out = args.out or work / "out"
    out.mkdir(parents=True, exist_ok=True)
    print(f"bench.live: {versions()}")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
    ok = True
    with open(os.devnull, "w") as quiet:
        quiet_logs("warning", None, quiet)  # the runs' own logs go to their files only
        servers = start_servers(args.backends, work)
        try:
            if not args.skip_latency:
                ok = run_latency(args, servers, work, out, quiet)[1] and ok
            if not args.skip_cpu:
                ok = run_cpu(args, servers, work, out)[1] and ok
        finally:
            for server in servers.values():
                server.stop()
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.selftest:
        print("selftest: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
