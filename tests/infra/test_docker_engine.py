"""The private Docker engine fixture (tests/support/docker.py): run, exec and cp work on both
test images, the images are what they claim (busybox only; GNU tools), and an engine leaves
no process, mount or folder behind."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import docker
from tests.support.docker import Container, DockerEngine, EngineError

Run = Callable[..., Container]


def test_run_exec_and_cp_work_on_the_private_engine(
    docker_engine: DockerEngine, docker_run: Run, tmp_path: Path
) -> None:
    """A busybox container started with a bind mount: bytes sent to `exec`'s stdin come back
    by `docker cp`, a file written under the bind appears on this machine, `cp_to` puts a
    file in, and a failing command raises EngineError with docker's message."""
    assert docker_engine.socket_path.parent == docker_engine.root
    assert docker_engine.env()["DOCKER_HOST"] == f"unix://{docker_engine.socket_path}"
    out = tmp_path / "out"
    out.mkdir()
    box = docker_run(docker_engine.busybox_image(), binds={out: "/out"})
    payload = os.urandom(200_000) + b"\0\n end"
    box.sh("cat > /tmp/blob", input=payload)
    box.cp_from("/tmp/blob", tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == payload
    box.sh("cp /tmp/blob /out/copied")
    assert (out / "copied").read_bytes() == payload
    (tmp_path / "in.txt").write_text("from the host\n")
    box.cp_to(tmp_path / "in.txt", "/tmp/in.txt")
    assert box.exec("cat", "/tmp/in.txt").stdout == b"from the host\n"
    with pytest.raises(EngineError, match="exit 3"):
        box.sh("echo oops >&2; exit 3")
    assert box.sh("exit 4", check=False).returncode == 4


def test_the_busybox_image_has_no_gnu_tool_and_no_python(
    docker_engine: DockerEngine, docker_run: Run
) -> None:
    """The busybox image's find, stat, tar, sha256sum and xargs are busybox applets (no
    `-printf`, no `sha256sum -z`), and python3 is absent: the fallback path's container."""
    box = docker_run(docker_engine.busybox_image())
    assert box.exec("readlink", "/bin/find").stdout.strip() == b"busybox"
    assert box.sh("find / -maxdepth 0 -printf x", check=False).returncode != 0
    assert box.sh("echo | sha256sum -z", check=False).returncode != 0
    assert box.sh("command -v python3", check=False).returncode != 0
    listing = box.sh("echo hi > /tmp/a && stat -c '%s %Y' /tmp/a && sha256sum /tmp/a")
    size, digest_line = listing.stdout.decode().splitlines()
    assert size.split()[0] == "3"
    assert digest_line.startswith(
        "98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"
    )


def test_the_gnu_images_have_gnu_tools_and_python_on_request(
    docker_engine: DockerEngine, docker_run: Run
) -> None:
    """The GNU image has GNU find (-printf), tar, stat, `sha256sum -z`, `xargs -0` and
    nanosecond `date`, but no python3; the python variant adds a working python3 (hashlib,
    ctypes)."""
    gnu = docker_run(docker_engine.gnu_image())
    assert b"GNU findutils" in gnu.exec("find", "--version").stdout
    assert b"GNU tar" in gnu.exec("tar", "--version").stdout
    script = (
        "printf 'a\\0b\\0' > /tmp/l && find /tmp/l -printf '%s %y\\n' && "
        "printf '/tmp/l\\0' | xargs -0 sha256sum -z | tr '\\0' '\\n' | wc -l && "
        "stat -c %s /tmp/l && date +%s%N"
    )
    lines = gnu.sh(script).stdout.decode().split()
    assert lines[:5] == ["4", "f", "1", "4", lines[4]] and len(lines[4]) >= 19
    assert gnu.sh("command -v python3", check=False).returncode != 0
    snake = docker_run(docker_engine.gnu_image(python=True))
    code = "import hashlib, ctypes; print(hashlib.sha256(b'').hexdigest()[:12])"
    assert snake.exec("python3", "-c", code).stdout == b"e3b0c44298fc\n"


def test_a_container_stops_starts_and_goes(docker_engine: DockerEngine, docker_run: Run) -> None:
    """`status` follows a container through stop, start, kill and rm (then `missing`); a
    container under docker-init stops without waiting for its grace period."""
    box = docker_run(docker_engine.busybox_image())
    assert box.status() == "running"
    box.stop(timeout_s=30)
    assert box.status() == "exited"
    box.start()
    assert box.status() == "running"
    box.kill()
    assert box.status() == "exited"
    box.rm()
    assert box.status() == "missing"


def test_a_named_volume_is_shared_and_exec_runs_as_a_given_user(
    docker_engine: DockerEngine, docker_run: Run
) -> None:
    """A named volume mounted in two containers shows one's writes to the other and outlives
    the first; `exec(user=...)` runs as that user of the image's /etc/passwd."""
    volume = f"forge-test-volume-{os.getpid()}"
    writer = docker_run(docker_engine.busybox_image(), volumes={volume: "/output"})
    writer.sh("echo generated > /output/a.png")
    writer.rm()
    reader = docker_run(docker_engine.gnu_image(), volumes={volume: "/media"})
    assert reader.exec("cat", "/media/a.png").stdout == b"generated\n"
    assert reader.exec("id", "-u", user="nobody").stdout == b"65534\n"


def test_an_engine_leaves_no_process_mount_or_folder() -> None:
    """An engine with a running container, a bind mount and an exec still attached: after
    `stop()`, dockerd is gone (by its PID), no process names its folder, nothing is mounted
    under it and the folder is removed."""
    reason = docker.missing_reason()
    if reason is not None:
        docker.skip_or_fail(reason)
    engine = DockerEngine().start()
    assert engine.process is not None
    pid = engine.process.pid
    try:
        bound = engine.root / "bound"
        bound.mkdir()
        box = engine.run(engine.busybox_image(), binds={bound: "/out"})
        hanging = subprocess.Popen(
            [docker.docker_cli(), "exec", box.name, "sleep", "1000"],
            env=engine.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert engine.leftover_processes() and engine.leftover_mounts()
    finally:
        engine.stop()
    hanging.wait(timeout=30)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert engine.leftover_processes() == []
    assert engine.leftover_mounts() == []
    assert not engine.root.exists()


def test_an_engine_that_cannot_start_says_why() -> None:
    """A dockerd that exits at once gives EngineError with its exit status, and its folder
    is removed."""
    engine = DockerEngine(dockerd="/bin/false")
    with pytest.raises(EngineError, match=r"dockerd exited \(1\)"):
        engine.start(timeout=10)
    assert not engine.root.exists()


def test_a_missing_engine_skips_with_one_line_or_fails_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where no engine can start the tier is skipped with one line naming the reason; with
    FORGE_REQUIRE_DOCKER=1, or in CI (CI=true), the same is a failure."""
    monkeypatch.delenv("FORGE_REQUIRE_DOCKER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^docker tier skipped: no dockerd here$"):
        docker.skip_or_fail("no dockerd here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no dockerd here \(CI=true\)"):
        docker.skip_or_fail("no dockerd here")
    monkeypatch.delenv("CI")
    monkeypatch.setenv("FORGE_REQUIRE_DOCKER", "1")
    with pytest.raises(pytest.fail.Exception, match="docker tier skipped: no dockerd here"):
        docker.skip_or_fail("no dockerd here")
    assert docker.missing_reason("/nonexistent/dockerd") is not None


def test_an_engine_left_by_a_killed_run_is_stopped_by_the_next_start() -> None:
    """An engine whose owner process is gone (a test run killed before its teardown) is
    stopped by PID, its container removed and its folder deleted by `reap_stale`, which every
    `start()` calls first."""
    reason = docker.missing_reason()
    if reason is not None:
        docker.skip_or_fail(reason)
    gone = subprocess.Popen(["true"])
    gone.wait()
    folder = Path(tempfile.mkdtemp(prefix=f"{docker.PREFIX}{gone.pid}-", dir="/tmp"))
    engine = DockerEngine(folder).start()
    process, engine.process = engine.process, None  # the run that started it is gone
    assert process is not None
    try:
        engine.run(engine.busybox_image())
        assert folder in docker.reap_stale()
        assert process.wait(timeout=30) is not None
        assert engine.leftover_processes() == [] and engine.leftover_mounts() == []
        assert not folder.exists()
    finally:
        engine.process = process
        engine._own_workdir = True
        engine.stop()
