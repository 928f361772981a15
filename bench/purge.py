"""What checking bytes before a purge costs: a cleanup of N synced files, with the round-3
delete (each file hashed on the container with `sha256sum` right before `rm`, compared with
the library copy's sha256 kept in the manifest) against the round-2 delete (size and
whole-second mtime re-checked with `stat`, then `rm`), side by side in one run.

    python -m bench.purge [--files 1000] [--size-mib 1.3] [--rounds 3] [--cold] [--workdir DIR]

Starts its own sshd on 127.0.0.1, writes N PNG-like files (a fixed seed), syncs them once
with `forge-syncd --once`, then for each round restores the container's files (hard links
to a pristine copy) and the manifest, and times one real cleanup run (`older_than` 1 s)
of each kind, alternately. `--cold` drops the page cache before each cleanup (root only),
so the container reads every file from disk, as a box purging day-old images would; by
default the files are in the page cache. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import as_installed
from forge_syncd.cleanup import cleanup_container
from forge_syncd.library.manifest import Manifest
from forge_syncd.remote.types import Deleted, RemoteFile
from forge_syncd.transports.shell import delete as shell_delete
from forge_syncd.transports.shell.delete import parse_deleted
from forge_syncd.transports.ssh import transport as transport_module
from forge_syncd.transports.ssh.connection import Connection, sh_command
from forge_syncd.transports.ssh.transport import SshTransport
from tests.conftest import make_container
from tests.support.cli import BIN, write_config
from tests.support.runs import context
from tests.support.sshd import SshdServer

# The round-2 delete: size and whole-second mtime, no bytes.
ROUND_2_LOOP = (
    'while [ "$#" -ge 4 ]; do f=$1; want=$2:$3; shift 4; '
    'if [ "$(stat -c %s:%Y -- "$f" 2>/dev/null)" = "$want" ] && rm -f -- "$f"; '
    'then printf "D%s\\0" "$f"; fi; done'
)


def round_2_delete(
    connection: Connection, root: str, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]
) -> Deleted:
    """The round-2 remote delete, fed the same quadruples (the sha256 is ignored)."""
    script = (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        f"exec xargs -0 -r -x -n 24 sh -c {shlex.quote(ROUND_2_LOOP)} sh\n"
    )
    quads = [
        field
        for at, field in enumerate(shell_delete.delete_input(files, sha256).split(b"\0")[:-1])
        if at % 5 != 3  # the round-2 loop took (name, size, mtime s) and ignores the rest
    ]
    result = connection.run(sh_command(script), stdin=b"\0".join(quads) + b"\0")
    return parse_deleted(result.stdout, {f.path for f in files})


def sh_delete(
    connection: Connection, root: str, files: Sequence[RemoteFile], sha256: Mapping[bytes, str]
) -> Deleted:
    """The round-3 delete on a container without python3: `sha256sum` per file in sh."""
    script = (
        f"cd -- {shlex.quote(root)} || exit 3\n"
        f"exec xargs -0 -r -x -n 25 sh -c {shlex.quote(shell_delete.DELETE_LOOP)} sh\n"
    )
    stdin = shell_delete.delete_input(files, sha256)
    result = connection.run(sh_command(script), stdin=stdin)
    return parse_deleted(result.stdout, {f.path for f in files})


def generate(root: Path, count: int, size: int, seed: int) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(count):
        n = int(size * rng.uniform(0.8, 1.2))
        path = root / f"2026-11-{1 + i % 28:02d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(n - 8))
        os.utime(path, (1.7e9 + i, 1.7e9 + i))
        total += n
    return total


def restore(pristine: Path, remote: Path, manifest_copy: Path, state: Path) -> None:
    """Put back the container's files (hard links: the purge unlinks them) and the
    manifest as it was after the sync."""
    shutil.rmtree(remote, ignore_errors=True)
    subprocess.run(["cp", "-al", str(pristine), str(remote)], check=True)
    for name in ("manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(state / name)
    shutil.copy(manifest_copy, state / "manifest.sqlite")


def one_cleanup(sshd: SshdServer, remote: Path, media: Path, state: Path, cold: bool) -> float:
    container = make_container(sshd, remote, include=("*",))
    container = dataclasses.replace(
        container, cleanup=dataclasses.replace(container.cleanup, older_than_s=1.0)
    )
    manifest = Manifest.open(state)
    box = SshTransport(container)
    try:
        box.list()  # connected and probed: the timing is the cleanup's own work
        if cold:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        started = time.perf_counter()
        outcome = cleanup_container(context(container, media, manifest, box), dry_run=False)
        elapsed = time.perf_counter() - started
    finally:
        box.close()
        manifest.close()
    if outcome.result != "success" or outcome.files == 0:
        raise SystemExit(f"cleanup failed: {outcome}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size-mib", type=float, default=1.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    as_installed()
    work = Path(tempfile.mkdtemp(prefix="bench-purge-", dir=args.workdir))
    sshd = SshdServer(work / "sshd").start()
    try:
        pristine = work / "pristine"
        total = generate(pristine, args.files, int(args.size_mib * 1024 * 1024), seed=23)
        remote = work / "remote"
        subprocess.run(["cp", "-al", str(pristine), str(remote)], check=True)
        config = write_config(work, sshd, remote, include='["*"]')
        subprocess.run(
            [str(BIN / "forge-syncd"), "--once", "--config", str(config)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        state = work / "state"
        manifest_copy = work / "manifest-after-sync.sqlite"
        shutil.copy(state / "manifest.sqlite", manifest_copy)
        real = transport_module.delete_with_command
        variants = {
            "bytes, python3": real,
            "bytes, sh (no python3)": sh_delete,
            "times only (round 2)": round_2_delete,
        }
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.rounds):
            for label, delete in variants.items():
                restore(pristine, remote, manifest_copy, state)
                transport_module.delete_with_command = delete  # type: ignore[assignment]
                times[label].append(one_cleanup(sshd, remote, work / "media", state, args.cold))
        transport_module.delete_with_command = real
    finally:
        sshd.stop()
        shutil.rmtree(work, ignore_errors=True)
    cache = "cold page cache" if args.cold else "files in the page cache"
    print(f"cleanup of {args.files} files, {total / 1e9:.2f} GB, {cache}, {args.rounds} rounds")
    base = statistics.median(times["times only (round 2)"])  # the ratio's denominator
    for label, values in times.items():
        seconds = statistics.median(values)
        print(
            f"  {label:24s} {seconds:7.2f} s  {args.files / seconds:8.0f} files/s"
            f"  {total / seconds / 1e6:7.0f} MB/s hashed  ratio {seconds / base:5.2f}"
        )


if __name__ == "__main__":
    main()
