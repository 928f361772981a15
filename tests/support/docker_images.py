"""Root filesystems for test images, made on this machine without a registry.

Each function fills an empty folder with a root filesystem that `docker import` (or
`DockerEngine.import_rootfs`) turns into an image:

- `busybox_rootfs`: Debian's busybox-static and a link for each of its applets in /bin, as in
  the official busybox image: `sh`, `find`, `tar`, `stat`, `sha256sum` (no `-z`), `xargs`...
  are busybox's, and there is no GNU tool and no python3: the SFTP-less fallback path.
- `host_rootfs`: GNU tools (dash as sh, bash, coreutils, findutils, tar, grep, sed...) copied
  from this machine with the shared libraries `ldd` names, in Debian's merged-/usr layout; with
  `python=True` also python3 and its standard library (without tests, tkinter, idlelib...).
  A few MB (about 90 MB with python3); made in well under a second (a few with python3).
- `debootstrap_rootfs`: a Debian minbase made once by `debootstrap` and cached (about 30 s
  the first time, 200 MB), for a test that needs a whole distribution; copied fresh each time.

Measured on the 2-core machine (bench figures in the infra report): the host-tools rootfs is
built and imported in about a second and needs no network; debootstrap needs the Debian
mirror and half a minute once, then an import of 200 MB each time. The fixtures use the first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

# What a GNU container offers the code under test (those missing on this machine are left out).
GNU_TOOLS = (
    "bash", "cat", "chmod", "cp", "cut", "date", "dd", "df", "dirname", "du", "echo", "env",
    "false", "find", "grep", "gzip", "head", "id", "kill", "ln", "ls", "mkdir", "mktemp", "mv",
    "nice", "nproc", "printf", "readlink", "realpath", "rm", "rmdir", "sed", "sha256sum",
    "sleep", "sort", "stat", "sync", "tail", "tar", "tee", "test", "timeout", "touch", "tr",
    "true", "uname", "wc", "xargs", "awk", "basename", "md5sum", "sha1sum", "ionice", "od",
)  # fmt: skip
PYTHON_SKIP = {"test", "tkinter", "idlelib", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
DEBOOTSTRAP_CACHE = Path(
    os.environ.get("FORGE_DOCKER_ROOTFS_CACHE", "/var/cache/forge-syncd-docker")
)


def _skeleton(root: Path, merged_usr: bool) -> None:
    """Make the folders every image needs (and merged-/usr links when `merged_usr`)."""
    if merged_usr:
        for name in ("bin", "sbin", "lib", "lib64"):
            (root / "usr" / name).mkdir(parents=True, exist_ok=True)
            (root / name).symlink_to(f"usr/{name}")
    else:
        (root / "bin").mkdir(parents=True)
    for name in ("etc", "root", "proc", "sys", "dev", "run"):
        (root / name).mkdir(exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)


def shared_libraries(binary: Path) -> list[Path]:
    """Return the shared libraries `ldd` says `binary` loads (none for a static one)."""
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    libraries = []
    for line in done.stdout.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match:
            libraries.append(Path(match[1]))
    return libraries


def _copy_in(root: Path, source: Path, dest: Path | None = None) -> None:
    """Copy `source` (its target if a link) into root at `dest` (default: the same path)."""
    target = root / (dest or source).relative_to("/")
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def _copy_with_libraries(root: Path, binaries: Iterable[Path]) -> None:
    for binary in binaries:
        for library in shared_libraries(binary):
            _copy_in(root, library)


def busybox_rootfs(root: Path) -> None:
    """Given an empty folder, make there a busybox-only root filesystem (see module doc)."""
    found = shutil.which("busybox")
    if found is None:
        raise FileNotFoundError("busybox not found: apt-get install busybox-static")
    _skeleton(root, merged_usr=False)
    busybox = Path(os.path.realpath(found))
    shutil.copy2(busybox, root / "bin" / "busybox")
    _copy_with_libraries(root, [busybox])  # nothing for busybox-static
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            (root / "bin" / applet).symlink_to("busybox")


def host_rootfs(
    root: Path, python: bool = False, tools: Iterable[str] = GNU_TOOLS, extra: Iterable[str] = ()
) -> None:
    """Given an empty folder, make there a root filesystem with this machine's `tools` (and
    `extra` ones, such as `inotifywait`) and dash as /bin/sh, each with its shared libraries;
    python3 and its standard library too when `python`. Raise FileNotFoundError if sh is
    missing."""
    _skeleton(root, merged_usr=True)
    binaries = []
    for name in ("sh", *tools, *extra):
        found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
        if found is None:
            if name == "sh":
                raise FileNotFoundError("no /bin/sh on this machine")
            continue
        real = Path(os.path.realpath(found))
        shutil.copy2(real, root / "usr" / "bin" / name)
        binaries.append(real)
    if python:
        binaries += _copy_python(root)
    _copy_with_libraries(root, binaries)


def _copy_python(root: Path) -> list[Path]:
    """Copy python3 and its standard library into root; return the binaries (the
    interpreter and the extension modules) whose libraries must follow."""
    found = shutil.which("python3", path="/usr/bin:/bin")
    if found is None:
        raise FileNotFoundError("python3 not found")
    interpreter = Path(os.path.realpath(found))  # /usr/bin/python3.11
    _copy_in(root, interpreter)
    (root / "usr" / "bin" / "python3").symlink_to(interpreter.name)
    version = interpreter.name.removeprefix("python")
    stdlib = Path(f"/usr/lib/python{version}")
    shutil.copytree(
        stdlib,
        root / "usr" / "lib" / stdlib.name,
        symlinks=True,
        ignore=lambda folder, names: [
            n for n in names if Path(folder) == stdlib and (n in PYTHON_SKIP or n == "config")
        ],
    )
    return [interpreter, *sorted((stdlib / "lib-dynload").glob("*.so"))]


def debootstrap_rootfs(
    root: Path, cache: Path = DEBOOTSTRAP_CACHE, suite: str = "bookworm"
) -> None:
    """Given an empty folder, copy there a Debian minbase root filesystem, made by
    `debootstrap` into `cache` the first time (needs the Debian mirror, ~30 s). Raise
    FileNotFoundError without debootstrap, CalledProcessError if it fails."""
    base = cache / f"{suite}-minbase"
    if not base.is_dir():
        if shutil.which("debootstrap") is None:
            raise FileNotFoundError("debootstrap not found: apt-get install debootstrap")
        partial = cache / f"{suite}-minbase.partial"
        shutil.rmtree(partial, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / "debootstrap.log", "wb") as log:
            subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(partial), _mirror()],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=900,
            )
        partial.rename(base)
    root.rmdir()
    subprocess.run(["cp", "-a", str(base), str(root)], check=True)


def _mirror() -> str:
    """Return the Debian mirror this machine's apt uses (deb822 or one-line), or Debian's."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        try:
            text = source.read_text()
        except OSError:
            continue
        match = re.search(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.MULTILINE)
        if match:
            return match[1]
    return "http://deb.debian.org/debian"
