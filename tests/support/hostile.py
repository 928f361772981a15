"""A hostile container for tests: fake remote tools that lie, and canaries that show escapes.

The fakes are small scripts written into a folder that becomes the first entry of the remote
PATH (`SshdServer(workdir, path_dirs=[folder]).start()`). Each one answers the capability
probe like the GNU tool it replaces (so forge-syncd uses it) and then lies:

- `lying_find(extra)`: the real `find` listing, followed by crafted raw records `extra`;
- `lying_tar(members)`: crafted tar members first, then the real `tar` stream;
- `lying_sha256sum()`: the real `sha256sum -z` output with every digest replaced;
- `growing_after_listing(target, data)`: the real `find`, then `data` appended to `target`.

`Canary` snapshots a folder tree and reports every file created or changed outside the
places a run may write (the library, the state folder, the log, sshd's own folder).
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.support.faults import write_reliability

PYTHON = "/usr/bin/python3"  # the remote runs the fakes with the system Python
REAL_FIND = "/usr/bin/find"
REAL_TAR = "/usr/bin/tar"
REAL_SHA256SUM = "/usr/bin/sha256sum"
# Places an escape would most likely land outside the test's own folder.
GLOBAL_CANARIES = (Path("/tmp/PWNED"), Path("/PWNED"), Path("/root/PWNED"), Path("/etc/PWNED"))


def write_tool(folder: Path, name: str, body: str) -> Path:
    """Write an executable script `name` into `folder` (created); return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    path.chmod(0o755)
    return folder


def without(folder: Path, *names: str) -> Path:
    """Return a folder of links to every program in /usr/bin and /bin except `names`: as a
    session's only PATH, the remote lacks them (`command -v` finds nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for system in (Path("/usr/bin"), Path("/bin")):
        for program in system.iterdir():
            link = folder / program.name
            if program.name not in names and not link.exists():
                link.symlink_to(program)
    return folder


def disabled(folder: Path, *names: str) -> Path:
    """Make the remote lack `names` (each exits 127, so the probe does not find it)."""
    for name in names:
        write_tool(folder, name, "#!/bin/sh\nexit 127\n")
    return folder


def find_record(kind: bytes, size: bytes, mtime: bytes, path: bytes) -> bytes:
    """Return one raw record in the listing's format (four NUL-terminated fields)."""
    return kind + b"\0" + size + b"\0" + mtime + b"\0" + path + b"\0"


def lying_find(folder: Path, extra: bytes) -> Path:
    """Install a `find` that lists honestly, then appends the raw bytes `extra`."""
    (folder / "find.extra").parent.mkdir(parents=True, exist_ok=True)
    (folder / "find.extra").write_bytes(extra)
    body = (
        "#!/bin/sh\n"
        f'[ "$1" = -P ] || exec {REAL_FIND} "$@"\n'
        f'{REAL_FIND} "$@"; status=$?\n'
        f"cat '{folder / 'find.extra'}'\n"
        'exit "$status"\n'
    )
    return write_tool(folder, "find", body)


def growing_after_listing(folder: Path, target: Path, data: bytes) -> Path:
    """Install a `find` that lists honestly, then appends `data` to `target`: the file
    changes after the listing and before (or while) it is read, every time, on any path."""
    body = (
        "#!/bin/sh\n"
        f'[ "$1" = -P ] || exec {REAL_FIND} "$@"\n'
        f'{REAL_FIND} "$@"; status=$?\n'
        f"printf '%s' '{data.decode()}' >> '{target}'\n"
        'exit "$status"\n'
    )
    return write_tool(folder, "find", body)


def tar_member(
    name: bytes,
    data: bytes = b"",
    kind: bytes = tarfile.REGTYPE,
    size: int | None = None,
    linkname: str = "",
    mtime: int = 1_700_000_000,
) -> bytes:
    """Return the raw blocks of one GNU tar member (header, long name, padded data)."""
    info = tarfile.TarInfo(os.fsdecode(name))
    info.type = kind
    info.size = len(data) if size is None else size
    info.linkname = linkname
    info.mtime = mtime
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    body = data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return header + body


def lying_tar(folder: Path, members: bytes, then_real: bool = True) -> Path:
    """Install a `tar` that sends the raw `members` first, then (`then_real`) the real GNU
    tar stream of what was asked, so honest files arrive after the lies; else end blocks."""
    (folder / "tar.members").parent.mkdir(parents=True, exist_ok=True)
    (folder / "tar.members").write_bytes(members)
    body = (
        f"#!{PYTHON}\n"
        "import os, sys\n"
        "if sys.argv[1:2] == ['--version']:\n"
        f"    os.execv({REAL_TAR!r}, ['tar', '--version'])\n"
        f"with open({str(folder / 'tar.members')!r}, 'rb') as lies:\n"
        "    sys.stdout.buffer.write(lies.read())\n"
        "sys.stdout.buffer.flush()\n"
        + (
            f"os.execv({REAL_TAR!r}, ['tar', *sys.argv[1:]])\n"
            if then_real
            else "sys.stdin.buffer.read()\nsys.stdout.buffer.write(bytes(1024))\n"
        )
    )
    return write_tool(folder, "tar", body)


def lying_sha256sum(folder: Path) -> Path:
    """Install a `sha256sum` whose `-z` output has a wrong digest for every name."""
    body = (
        f"#!{PYTHON}\n"
        "import hashlib, subprocess, sys\n"
        f"real = subprocess.run([{REAL_SHA256SUM!r}, *sys.argv[1:]], stdout=subprocess.PIPE)\n"
        "out = []\n"
        "for record in real.stdout.split(b'\\0')[:-1]:\n"
        "    digest, rest = record[:64], record[64:]\n"
        "    out.append(hashlib.sha256(b'lie' + digest).hexdigest().encode() + rest)\n"
        "sys.stdout.buffer.write(b''.join(r + b'\\0' for r in out))\n"
        "sys.exit(real.returncode)\n"
    )
    return write_tool(folder, "sha256sum", body)


class Canary:
    """Snapshot of every entry under `root` (and a few global spots) before a run; after it,
    `written_outside()` lists what was created or changed outside the `allowed` folders."""

    def __init__(self, root: Path, allowed: Iterable[Path]) -> None:
        self.root = root
        self.allowed = [os.fsencode(path) for path in allowed]
        self.sentinel = root / "sentinel"
        self.sentinel.mkdir(exist_ok=True)
        (self.sentinel / "keep.txt").write_bytes(b"untouched")
        self.before = self._snapshot()

    def _is_allowed(self, path: bytes) -> bool:
        return any(path == top or path.startswith(top + b"/") for top in self.allowed)

    def _snapshot(self) -> dict[bytes, tuple[int, int, int]]:
        found: dict[bytes, tuple[int, int, int]] = {}
        base = os.fsencode(self.root)
        for folder, dirs, files in os.walk(base):
            for name in [*dirs, *files]:
                path = os.path.join(folder, name)
                if self._is_allowed(path):
                    continue
                info = os.lstat(path)
                if stat.S_ISDIR(info.st_mode):  # a folder changes when its children do
                    found[path] = (info.st_mode, 0, 0)
                else:
                    found[path] = (info.st_mode, info.st_size, info.st_mtime_ns)
        return found

    def written_outside(self) -> list[bytes]:
        """Return the paths created, changed or removed outside the allowed folders since
        the start, plus any PWNED file anywhere we look."""
        after = self._snapshot()
        changed = sorted(path for path, seen in after.items() if self.before.get(path) != seen)
        changed += sorted(path for path in self.before if path not in after)
        changed += [os.fsencode(p) for p in GLOBAL_CANARIES if os.path.lexists(p)]
        changed += [p for p in after if os.path.basename(p).startswith(b"PWNED")]
        return changed


class Grower:
    """Appends to a (remote) file in a background thread until stopped."""

    def __init__(self, path: Path, chunk: bytes, interval_s: float) -> None:
        self.path = path
        self.chunk = chunk
        self.interval_s = interval_s
        self.appended = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Grower:
        self._thread.start()
        return self

    def _run(self) -> None:
        with open(self.path, "ab") as handle:
            while not self._stop.is_set():
                handle.write(self.chunk)
                handle.flush()
                self.appended += len(self.chunk)
                self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll the callable `condition` until it returns true or `timeout` passes (a bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


class Results:
    """The cases of this suite and their outcomes, for the README's reliability table."""

    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(self, case: str, outcome: str, written_outside: int) -> None:
        self.rows.append(
            {"case": case, "outcome": outcome, "written_outside_library": written_outside}
        )

    def write(self) -> None:
        """Write `hostile.json` into $FORGE_RELIABILITY_DIR when it is set."""
        if self.rows:
            write_reliability("hostile.json", self.rows)
