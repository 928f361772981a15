"""Measure reading files out of a Docker container: the `docker` CLI against the Engine API.

    python -m bench.docker_exec [--big-mib 1024] [--small 20000] [--rounds 3] [--workdir DIR]

Starts a private engine (tests/support/docker.py) and a container of the GNU test image with
the data bind-mounted at /data: one big file (`--big-mib` MiB, random) and a small-files set
(`--small` files of 2-20 KiB, bench.compare's generator). Each method streams the data out of
the container into this process, which counts the bytes (nothing is written), except
`docker cp DIR`, which unpacks into a folder as users run it:

- `CLI exec`: `docker exec C cat|tar c ...` as a child process, its stdout read in 1 MiB blocks;
- `API exec`: the Engine API over the unix socket from Python with no dependency:
  `POST /containers/C/exec`, then `POST /exec/ID/start` upgraded to a raw stream
  (`Connection: Upgrade`, `Upgrade: tcp`; the engine answers 101 and sends stdout and stderr
  multiplexed in frames of an 8-byte header `[stream, 0, 0, 0, size as big-endian uint32]`,
  as the Engine API documents for attach/exec), demultiplexed in place in one buffer;
- `docker-py exec`: the `docker` PyPI package (`APIClient.exec_create` and
  `exec_start(stream=True)`), when it is installed (`pip install docker`: not a dependency);
- `API archive`: `GET /containers/C/archive?path=P`, the endpoint `docker cp` uses, one
  request for the whole file or folder (and, printed after the table, one request per file);
- `docker cp -`: `docker cp C:/data/X -` (a tar stream on stdout), and `docker cp DIR`.

Per method: median seconds over `--rounds` rounds (methods alternate within a round), MB/s,
files/s, and CPU seconds spent in this process, in the CLI child and in the engine (dockerd,
containerd and the shims, read from /proc), then CPU ms per MB moved. The data is read once
before measuring, so every method reads from the page cache.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlencode

from bench.compare import generate
from tests.support.docker import DockerEngine, UnixHTTPConnection, api_request, docker_cli

MIB = 1024 * 1024
HEADER = struct.Struct(">BxxxL")  # stream (0 stdin, 1 stdout, 2 stderr), 3 zero bytes, size
STDERR_LIMIT = 64 * 1024


@dataclass
class Sample:
    """One method's run: bytes received, seconds, and CPU seconds where they were spent."""

    nbytes: int
    seconds: float
    cpu_ours: float
    cpu_cli: float
    cpu_engine: float


def api_exec(
    socket_path: Path, container: str, argv: list[str], sink: Callable[[memoryview], None]
) -> int:
    """Run `argv` in `container` through the Engine API over its unix socket; hand each
    piece of stdout to `sink` as it arrives (stderr kept up to 64 KiB). Return the exit
    code. Raise RuntimeError if the engine refuses or the stream is cut mid-frame."""
    status, body = api_request(
        socket_path,
        "POST",
        f"/containers/{container}/exec",
        {"AttachStdout": True, "AttachStderr": True, "Cmd": argv},
    )
    if status != 201:
        raise RuntimeError(f"exec create: {status} {body[:200]!r}")
    exec_id = json.loads(body)["Id"]
    payload = b'{"Detach": false, "Tty": false}'
    request = (
        f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
        "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path))
        sock.sendall(request)
        rest = _response_head(sock)
        _demultiplex(sock, rest, sink)
    status, body = api_request(socket_path, "GET", f"/exec/{exec_id}/json")
    return int(json.loads(body)["ExitCode"])


def _response_head(sock: socket.socket) -> bytes:
    """Read the HTTP response head of an exec start; return the bytes after it. Raise
    RuntimeError unless the engine switched to the raw stream (101, or 200 from old ones)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk or len(received) > 65536:
            raise RuntimeError(f"exec start: no response head: {received[:200]!r}")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if status_line.split()[1:2] not in ([b"101"], [b"200"]):
        raise RuntimeError(f"exec start: {status_line[:200]!r}")
    return rest


def _demultiplex(sock: socket.socket, rest: bytes, sink: Callable[[memoryview], None]) -> bytes:
    """Read frames until the engine closes the stream; hand stdout payloads to `sink` as views
    of one reused buffer (no copy); return stderr (bounded). Raise RuntimeError if the stream
    ends inside a frame."""
    buffer = bytearray(max(4 * MIB, len(rest)))
    view = memoryview(buffer)
    buffer[: len(rest)] = rest
    have, start = len(rest), 0
    stderr = bytearray()
    while True:
        while have - start >= HEADER.size:
            kind, size = HEADER.unpack_from(buffer, start)
            end = start + HEADER.size + size
            if end > have:
                break
            if kind == 1:
                sink(view[start + HEADER.size : end])
            elif kind == 2 and len(stderr) < STDERR_LIMIT:
                stderr += view[start + HEADER.size : end][: STDERR_LIMIT - len(stderr)]
            start = end
        if start:  # keep the partial frame at the front: only its few bytes move
            buffer[: have - start] = buffer[start:have]
            have, start = have - start, 0
        if have + HEADER.size + 65536 > len(buffer):
            grown = bytearray(len(buffer) * 2)  # a frame larger than the buffer
            grown[:have] = buffer[:have]
            view.release()
            buffer, view = grown, memoryview(grown)
        received = sock.recv_into(view[have:])
        if not received:
            if have:
                raise RuntimeError(f"exec stream cut inside a frame ({have} bytes left)")
            return bytes(stderr)
        have += received


class Meter:
    """CPU seconds of this process, of reaped children and of the engine's processes."""

    def __init__(self, engine: DockerEngine) -> None:
        self.engine = engine
        self.tick = os.sysconf("SC_CLK_TCK")

    def engine_cpu(self) -> float:
        total = 0
        assert self.engine.process is not None
        for pid in {self.engine.process.pid, *self.engine.leftover_processes()}:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        return total / self.tick

    def snapshot(self) -> tuple[float, float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            time.perf_counter(),
            time.process_time(),
            children.ru_utime + children.ru_stime,
            self.engine_cpu(),
        )

    def measure(self, run: Callable[[], int]) -> Sample:
        before = self.snapshot()
        nbytes = run()
        after = self.snapshot()
        wall, ours, cli, engine = (b - a for a, b in zip(before, after, strict=True))
        return Sample(nbytes, wall, ours, cli, engine)


def cli_stream(engine: DockerEngine, argv: list[str]) -> int:
    """Run a `docker` CLI command; read its stdout in 1 MiB blocks; return the bytes read."""
    buffer = bytearray(MIB)
    total = 0
    with subprocess.Popen(
        [docker_cli(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=engine.env()
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        stdout = cast(io.BufferedReader, process.stdout)
        while count := stdout.readinto(buffer):
            total += count
        error = process.stderr.read()
    if process.returncode != 0:
        raise RuntimeError(f"docker {argv[0]}: {error[-300:]!r}")
    return total


def api_stream(engine: DockerEngine, container: str, argv: list[str]) -> int:
    """Run `argv` through `api_exec`; return the stdout bytes received."""
    total = 0

    def count(piece: memoryview) -> None:
        nonlocal total
        total += len(piece)

    code = api_exec(engine.socket_path, container, argv, count)
    if code != 0:
        raise RuntimeError(f"{argv[0]} exited {code} in the container")
    return total


def api_archive(engine: DockerEngine, container: str, paths: list[str]) -> int:
    """Read each of `paths` as a tar stream from the archive endpoint `docker cp` uses
    (`GET /containers/C/archive?path=P`), one request after another on one kept-alive
    connection; return the bytes received."""
    conn = UnixHTTPConnection(str(engine.socket_path), 600)
    buffer = bytearray(MIB)
    total = 0
    try:
        for path in paths:
            conn.request("GET", f"/containers/{container}/archive?{urlencode({'path': path})}")
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"archive {path}: {response.status} {response.read(200)!r}")
            while count := response.readinto(buffer):
                total += count
    finally:
        conn.close()
    return total


def docker_py_stream(engine: DockerEngine, container: str, argv: list[str]) -> int:
    """Run `argv` through docker-py's `exec_start(stream=True)`; return the bytes received."""
    import docker  # type: ignore[import-untyped]  # the PyPI package, optional

    client = docker.APIClient(base_url=engine.host, version="auto")
    try:
        exec_id = client.exec_create(container, argv)["Id"]
        total = sum(len(chunk) for chunk in client.exec_start(exec_id, stream=True))
    finally:
        client.close()
    return total


def copy_to_folder(engine: DockerEngine, container: str, source: str, dest: Path) -> int:
    """`docker cp` source into a fresh dest; return the bytes it wrote."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    engine.docker("cp", f"{container}:{source}", str(dest), timeout=1200)
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def methods(
    engine: DockerEngine, container: str, source: str, dest: Path, with_py: bool
) -> dict[str, Callable[[], int]]:
    """Return the methods that read `source` (a file or folder under /data) out."""
    parent, name = os.path.split(source)
    tar = ["tar", "-C", parent, "-cf", "-", name]
    runs: dict[str, Callable[[], int]] = {
        "CLI exec tar": lambda: cli_stream(engine, ["exec", container, *tar]),
        "API exec tar (raw socket)": lambda: api_stream(engine, container, tar),
    }
    if with_py:
        runs["docker-py exec tar"] = lambda: docker_py_stream(engine, container, tar)
    runs["API archive (docker cp's endpoint)"] = lambda: api_archive(engine, container, [source])
    runs["docker cp - (tar on stdout)"] = lambda: cli_stream(
        engine, ["cp", f"{container}:{source}", "-"]
    )
    runs["docker cp DIR (unpacked)"] = lambda: copy_to_folder(engine, container, source, dest)
    return runs


def measure(
    meter: Meter, runs: dict[str, Callable[[], int]], rounds: int
) -> dict[str, list[Sample]]:
    """Run each method once per round, reversing the order on odd rounds."""
    order = list(runs)
    results: dict[str, list[Sample]] = {name: [] for name in order}
    for n in range(rounds):
        for name in order if n % 2 == 0 else order[::-1]:
            results[name].append(meter.measure(runs[name]))
    return results


def table(label: str, results: dict[str, list[Sample]], files: int) -> list[str]:
    """Return markdown rows: medians per method and time relative to `CLI exec tar`."""
    base = statistics.median(s.seconds for s in results["CLI exec tar"])
    lines = []
    for name, samples in results.items():
        seconds = statistics.median(s.seconds for s in samples)
        nbytes = samples[0].nbytes
        ours = statistics.median(s.cpu_ours for s in samples)
        cli = statistics.median(s.cpu_cli for s in samples)
        engine = statistics.median(s.cpu_engine for s in samples)
        per_mb = (ours + cli + engine) / (nbytes / 1e6) * 1000
        lines.append(
            f"| {label} | {name} | {seconds:.2f} | {nbytes / seconds / 1e6:.0f} | "
            f"{files / seconds:,.0f} | {ours:.2f} | {cli:.2f} | {engine:.2f} | "
            f"{per_mb:.2f} | {seconds / base:.2f} |"
        )
    return lines


def write_big(path: Path, mib: int) -> None:
    """Write `mib` MiB of random bytes at path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 * MIB)
    with open(path, "wb") as handle:
        for _ in range(mib // 16):
            handle.write(block)
        handle.write(block[: (mib % 16) * MIB])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    try:
        import docker  # noqa: F401

        with_py = True
    except ImportError:
        print("docker-py is not installed: measuring without it", file=sys.stderr)
        with_py = False
    work = args.workdir or Path(tempfile.mkdtemp(prefix="forge-bench-docker-"))
    data = work / "data"
    print(f"generating in {work} ...", file=sys.stderr)
    write_big(data / "big" / "big.bin", args.big_mib)
    files, small_bytes = generate(data / "small", args.small, 2048, 20480, 2)
    subprocess.run(["tar", "-C", str(data), "-cf", "/dev/null", "."], check=True)  # warm cache
    engine = DockerEngine().start()
    try:
        started = time.perf_counter()
        image = engine.gnu_image()
        image_s = time.perf_counter() - started
        box = engine.run(image, binds={data: "/data"})
        meter = Meter(engine)
        big = measure(
            meter, methods(engine, box.name, "/data/big", work / "out", with_py), args.rounds
        )
        small = measure(
            meter, methods(engine, box.name, "/data/small", work / "out", with_py), args.rounds
        )
        some = sorted(str(p.relative_to(work)) for p in (data / "small").rglob("*.png"))[:1000]
        per_file = meter.measure(lambda: api_archive(engine, box.name, ["/" + p for p in some]))
    finally:
        engine.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n### Reading out of a container: {args.big_mib} MiB file, {files} small files "
        f"({small_bytes / 1e6:.0f} MB); {args.rounds} rounds, medians; engine start "
        f"{engine.started_s:.2f} s, GNU image built and imported in {image_s:.2f} s\n"
    )
    print(
        "| data | method | seconds | MB/s | files/s | CPU s ours | CPU s CLI | CPU s engine |"
        " CPU ms/MB | time / CLI exec |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        "\n".join(
            table(f"{args.big_mib} MiB file", big, 1) + table(f"{files} small files", small, files)
        )
    )
    print(
        f"\nThe archive endpoint one file per request (keep-alive), {len(some)} files: "
        f"{len(some) / per_file.seconds:,.0f} files/s, "
        f"{per_file.cpu_engine / len(some) * 1000:.1f} ms of engine CPU per file."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
