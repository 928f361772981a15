"""A private Docker engine for tests and benchmarks, from Debian's `docker.io`.

`DockerEngine().start()` runs the real `/usr/sbin/dockerd` with everything of its own in a
fresh folder under /tmp (short, for the unix socket paths): `--data-root`, `--exec-root`, the
API socket, the pidfile and an empty `--config-file` (a host's /etc/docker/daemon.json is never
read), with `--bridge=none --iptables=false --ip-masq=false`, so the engine changes no network
setting of the machine. It waits until the engine answers `GET /_ping` (well under a second
here, 20 s at most). `stop()` removes every container, stops dockerd by its PID (SIGTERM, then
SIGKILL), kills by PID whatever process still names the folder (a containerd or shim left
behind), lazily unmounts what is still mounted under it and removes it. An engine left by a
killed test run (its owner's PID, in its folder's name, is gone) is stopped the same way by
the next `start()`. Recipe and what was seen working: /work/shared/notes/docker-xfs-browser.md.

There is no registry: images are imported from a rootfs made here (tests/support/
docker_images.py): `busybox_image()` (busybox-static and its applets only: no GNU tools, no
python3) and `gnu_image()` (GNU find, tar, stat, sha256sum, xargs, date... copied from this
machine with their shared libraries; python3 on request).

`engine.run(image, binds={host: path})` starts a container running `sleep infinity` with no
network (`--network none`) under docker-init, so `stop()` takes no grace period; `Container`
has `exec`, `sh`, `cp_from`, `cp_to`, `stop`, `start`, `kill`, `rm` and `status` through the
`docker` CLI of the same package (/usr/bin/docker, whatever other CLI is first on PATH).

`engine_or_skip()` is what fixtures call: it returns a started engine, or skips the test with
one line saying why no engine can start here (`missing_reason()`, or dockerd's own error);
with FORGE_REQUIRE_DOCKER=1 or CI=true in the environment that is a failure instead of a skip.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import docker_images

DOCKERD = "/usr/sbin/dockerd"
SKIP_PREFIX = "docker tier skipped"
PREFIX = "forge-dockerd-"  # + the owner's PID: a folder whose owner is gone is stale
_NAMES = itertools.count()


def docker_cli() -> str:
    """Return the `docker` CLI to use: Debian's (it matches the engine's API version), else
    the first on PATH, else the Debian path (which then fails with a clear error)."""
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker") or "/usr/bin/docker"


def missing_reason(dockerd: str = DOCKERD) -> str | None:
    """Return why no engine can start here (one line), or None if one may."""
    if os.geteuid() != 0:
        return "dockerd needs root here (the tests run as an ordinary user)"
    if not os.access(dockerd, os.X_OK):
        return f"{dockerd} not found: apt-get install docker.io (scripts/bootstrap.sh does)"
    if not os.access(docker_cli(), os.X_OK):
        return "the docker CLI is missing: apt-get install docker.io"
    if shutil.which("busybox") is None:
        return "busybox not found: apt-get install busybox-static (the test images need it)"
    return None


class EngineError(RuntimeError):
    """The engine could not start, or a docker command failed; the message says why."""


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to the engine's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def api_request(
    socket_path: Path, method: str, path: str, body: Any = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """Given the engine's socket, send one Engine API request (a JSON body if given); return
    (status, body). Raise OSError if the socket does not answer."""
    conn = UnixHTTPConnection(str(socket_path), timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        payload = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class DockerEngine:
    """One private dockerd. `workdir` (made under /tmp when None) holds all its state and is
    removed by `stop()` when the engine made it."""

    workdir: Path | None = None
    dockerd: str = DOCKERD
    process: subprocess.Popen[bytes] | None = None
    started_s: float = 0.0  # seconds from launch to the first answered ping
    _own_workdir: bool = False
    _images: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        assert self.workdir is not None, "start() the engine first"
        return self.workdir

    @property
    def socket_path(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        """The engine's address as DOCKER_HOST takes it."""
        return f"unix://{self.socket_path}"

    @property
    def log_file(self) -> Path:
        return self.root / "dockerd.log"

    def env(self) -> dict[str, str]:
        """Return an environment for the `docker` CLI (or any client) aimed at this engine
        only: DOCKER_HOST set, a CLI config folder of its own (no user's contexts)."""
        env = dict(os.environ)
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.root / "cli")
        return env

    def start(self, timeout: float = 20.0) -> DockerEngine:
        """Launch dockerd and wait until it answers; return self. Raise EngineError (with the
        tail of dockerd's log) if it exits or does not answer within `timeout` seconds."""
        reap_stale()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir="/tmp"))
            self._own_workdir = True
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "daemon.json").write_text("{}\n")
        (self.root / "cli").mkdir(exist_ok=True)
        argv = [
            self.dockerd,
            f"--config-file={self.root / 'daemon.json'}",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--host={self.host}",
            f"--pidfile={self.root / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
        ]
        launched = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = launched + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                tail = self._tail()
                self.stop()
                raise EngineError(f"dockerd exited ({code}): {tail}")
            with contextlib.suppress(OSError):
                if api_request(self.socket_path, "GET", "/_ping", timeout=2)[0] == 200:
                    self.started_s = time.monotonic() - launched
                    return self
            time.sleep(0.05)
        tail = self._tail()
        self.stop()
        raise EngineError(f"dockerd did not answer within {timeout:.0f} s: {tail}")

    def _tail(self, lines: int = 5) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def docker(
        self,
        *args: str,
        input: bytes | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run the `docker` CLI against this engine; return the completed process (stdout
        and stderr captured). Raise EngineError on a non-zero exit when `check`."""
        done = subprocess.run(
            [docker_cli(), *args],
            input=input,
            capture_output=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip()
            raise EngineError(f"docker {' '.join(args[:3])}: exit {done.returncode}: {message}")
        return done

    def import_rootfs(self, rootfs: Path, tag: str) -> str:
        """Given a folder holding a root filesystem, import it as image `tag`; return tag."""
        with subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        ) as tar:
            assert tar.stdout is not None
            done = subprocess.run(
                [docker_cli(), "import", "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                env=self.env(),
                timeout=300,
                check=False,
            )
            tar.stdout.close()
        if tar.returncode != 0 or done.returncode != 0:
            raise EngineError(f"docker import {tag}: {done.stderr.decode(errors='replace')}")
        return tag

    def _cached_image(self, tag: str, build: Any) -> str:
        if tag not in self._images:
            folder = Path(tempfile.mkdtemp(prefix="rootfs-", dir=self.root))
            try:
                build(folder)
                self._images[tag] = self.import_rootfs(folder, tag)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        return self._images[tag]

    def busybox_image(self) -> str:
        """Return the tag of an image with busybox only (imported once per engine)."""
        return self._cached_image("forge-test/busybox:1", docker_images.busybox_rootfs)

    def gnu_image(self, python: bool = False) -> str:
        """Return the tag of an image with GNU tools (and python3 when `python`) copied from
        this machine (imported once per engine)."""
        tag = "forge-test/gnu-python:1" if python else "forge-test/gnu:1"
        return self._cached_image(tag, lambda root: docker_images.host_rootfs(root, python))

    def debian_image(self) -> str:
        """Return the tag of a Debian minbase image (debootstrapped once into a cache folder,
        then imported once per engine: tens of seconds; prefer `gnu_image`)."""
        return self._cached_image("forge-test/debian:1", docker_images.debootstrap_rootfs)

    def run(
        self,
        image: str,
        name: str | None = None,
        binds: Mapping[Path | str, str] | None = None,
        volumes: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        command: Sequence[str] = ("sleep", "infinity"),
        init: bool = True,
    ) -> Container:
        """Start a detached container of `image` without network, running `command` (under
        docker-init when `init`, so it stops at once); `binds` maps host folders to container
        paths, `volumes` named volumes to paths. Return it."""
        name = name or f"forge-test-{os.getpid()}-{next(_NAMES)}"
        args = ["run", "-d", "--network", "none", "--name", name]
        if init:
            args.append("--init")
        for source, target in (binds or {}).items():
            args += ["--mount", f"type=bind,source={source},target={target}"]
        for volume, target in (volumes or {}).items():
            args += ["--mount", f"type=volume,source={volume},target={target}"]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        self.docker(*args, image, *command)
        return Container(self, name)

    def remove_all_containers(self) -> None:
        """Remove every container of this engine (running or not)."""
        ids = self.docker("ps", "-aq", timeout=30).stdout.decode().split()
        if ids:
            self.docker("rm", "-f", *ids, timeout=60, check=False)

    def stop(self) -> None:
        """Remove the containers, stop dockerd by PID (SIGTERM, SIGKILL after 20 s), kill by
        PID what is left of it, unmount and remove its folder (when the engine made it);
        idempotent. Also stops an engine this object did not launch (see `reap_stale`)."""
        pid = self.dockerd_pid()
        if pid is not None:
            with contextlib.suppress(EngineError, subprocess.TimeoutExpired, OSError):
                self.remove_all_containers()
            _terminate(pid, self.process, grace_s=20)
        self.process = None
        if self.workdir is None:
            return
        for leftover in self.leftover_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        for mount in reversed(self.leftover_mounts()):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def dockerd_pid(self) -> int | None:
        """Return the PID of this engine's running dockerd (ours, or from its pidfile when
        its command line names this folder), or None."""
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        if self.workdir is None:
            return None
        try:
            pid = int((self.root / "docker.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.root).encode() in cmdline else None

    def leftover_processes(self) -> list[int]:
        """Return the PIDs of processes whose command line names this engine's folder."""
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    def leftover_mounts(self) -> list[str]:
        """Return the mount points under this engine's folder, in mount order."""
        prefix = str(self.root)
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
        return points


@dataclass
class Container:
    """A container of a `DockerEngine`, by name."""

    engine: DockerEngine
    name: str

    def exec(
        self,
        *argv: str,
        input: bytes | None = None,
        user: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `argv` in the container (stdin from `input`); return the completed process.
        Raise EngineError on a non-zero exit when `check`."""
        args = ["exec", "-i"] if input is not None else ["exec"]
        if user is not None:
            args += ["--user", user]
        return self.engine.docker(
            *args, self.name, *argv, input=input, timeout=timeout, check=check
        )

    def sh(self, script: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run a `sh -c` script in the container with positional `args`; as `exec`."""
        return self.exec("sh", "-c", script, "sh", *args, **kwargs)

    def cp_from(self, source: str, dest: Path) -> None:
        """Copy `source` (a path in the container) to `dest` on this machine (`docker cp`)."""
        self.engine.docker("cp", f"{self.name}:{source}", str(dest), timeout=600)

    def cp_to(self, source: Path, dest: str) -> None:
        """Copy `source` on this machine into the container at `dest` (`docker cp`)."""
        self.engine.docker("cp", str(source), f"{self.name}:{dest}", timeout=600)

    def status(self) -> str:
        """Return the container's state (`running`, `exited`...), or `missing`."""
        done = self.engine.docker(
            "inspect", "--format", "{{.State.Status}}", self.name, check=False
        )
        return done.stdout.decode().strip() if done.returncode == 0 else "missing"

    def stop(self, timeout_s: int = 2) -> None:
        self.engine.docker("stop", "-t", str(timeout_s), self.name)

    def start(self) -> None:
        self.engine.docker("start", self.name)

    def kill(self, sig: str = "KILL") -> None:
        self.engine.docker("kill", "--signal", sig, self.name)

    def rm(self) -> None:
        """Remove the container, running or not; no error if it is gone already."""
        self.engine.docker("rm", "-f", self.name, check=False)


def _terminate(pid: int, process: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM `pid`, wait up to `grace_s` for it to exit (reaping it when it is our child
    `process`), then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                return
        elif not _running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()


def _running(pid: int) -> bool:
    """Return whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(base: Path = Path("/tmp")) -> list[Path]:
    """Stop the engines (and remove the folders) that test runs killed before their teardown
    left behind: those whose owner PID, in the folder's name, is gone. Return the folders."""
    reaped = []
    for folder in base.glob(f"{PREFIX}*"):
        match = re.fullmatch(rf"{PREFIX}(\d+)-.*", folder.name)
        if match and not _pid_alive(int(match[1])):
            DockerEngine(folder, _own_workdir=True).stop()
            reaped.append(folder)
    return reaped


def skip_or_fail(reason: str) -> None:
    """Given why the Docker tier cannot run here, skip the calling test with one clear line,
    or fail it when FORGE_REQUIRE_DOCKER=1 or CI=true (a CI installs docker.io: an engine
    that cannot start there is a failure, never a quiet skip)."""
    message = f"{SKIP_PREFIX}: {reason}"
    if os.environ.get("FORGE_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{message} (FORGE_REQUIRE_DOCKER=1)", pytrace=False)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true)", pytrace=False)
    pytest.skip(message)


def engine_or_skip(workdir: Path | None = None) -> DockerEngine:
    """Return a started private engine, or skip (see `skip_or_fail`) saying why not."""
    reason = missing_reason()
    if reason is None:
        try:
            return DockerEngine(workdir).start()
        except (EngineError, OSError) as exc:
            reason = f"dockerd did not start: {exc}"
    skip_or_fail(reason)
    raise AssertionError("unreachable")
