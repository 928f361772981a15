"""`forge-syncctl add` and `remove` as an operator runs them: the CLI as a subprocess, a real
daemon, and a real sshd per box (its own port, host key and HOME).

The probe's `/workspace` and `/` are replaced by two temporary folders through
FORGE_SYNCD_TEST_PROBE_BASES (read by the daemon only for the test suite); the login
user's HOME is the sshd's session HOME. Tests other than the detection ones pass `--kind`
or `--root`: a ComfyUI process another test starts is seen by every probe on the machine.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from forge_syncd.control.client import ControlClient
from forge_syncd.onboard.detect import TEST_BASES_ENV
from tests.support.cli import BIN
from tests.support.daemon import start_daemon, wait_until
from tests.support.docker import Container, DockerEngine
from tests.support.sshd import SshdServer, make_key
from tests.support.trees import tree_files, write_file

OLD = 1.7e9  # an mtime well past the one-hour settle of these tests


@dataclass
class Rig:
    work: Path
    config: Path
    key: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.work / "run" / "control.sock"

    @property
    def known_hosts(self) -> Path:
        return self.work / "state" / "known_hosts"

    @property
    def ws(self) -> Path:
        return self.work / "workspace"

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    def dropin(self, name: str) -> Path:
        return self.work / "state" / "containers.d" / f"{name}.yaml"

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def status(self) -> dict[str, dict[str, object]]:
        with ControlClient(self.socket) as client:
            result = client.call("status", {}, timeout=30)
        return {c["name"]: c for c in result["containers"]}

    def knows(self, box: SshdServer) -> bool:
        """Whether the daemon's known_hosts holds a line for `box`."""
        return self.known_hosts.exists() and f"]:{box.port} " in self.known_hosts.read_text()


@pytest.fixture(scope="module")
def rig(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A daemon with its own key (known to no box yet), known_hosts in its state folder,
    settle 1h and live mode off, and one container in the main config (`main-box`)."""
    work = tmp_path_factory.mktemp("add")
    key = work / "daemon_ed25519"
    make_key(key, "forge-syncd@test")
    main_remote = work / "main-remote"
    write_file(main_remote / "a.png", b"main", OLD)
    config = work / "forge-sync.yaml"
    config.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock}}
metrics: {{listen: null}}
defaults:
  ssh: {{identity_file: {key}, known_hosts: {work}/state/known_hosts, connect_timeout: 5s}}
  sync: {{settle: 1h, interval: 1h, watch: false}}
containers:
  - name: main-box
    kind: generic
    host: 127.0.0.1
    root: {main_remote}
    ssh: {{user: {sshd.user}, port: {sshd.port}, identity_file: {sshd.client_key},
           known_hosts: {sshd.known_hosts}}}
"""
    )
    (work / "workspace").mkdir()
    (work / "rootfs").mkdir()
    bases = f"{work / 'workspace'}:{work / 'rootfs'}"
    process = start_daemon(config, extra_env={TEST_BASES_ENV: bases})
    rig = Rig(work, config, key, process)
    wait_until(lambda: rig.socket.exists(), what="the control socket")
    yield rig
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def start_box(folder: Path, authorized: Path | None, home: Path | None = None) -> SshdServer:
    """A box: a real sshd with its own host key on its own port; `authorized` (a public
    key file) replaces its authorized_keys."""
    box = SshdServer(folder, home=home or folder / "home").start()
    if authorized is not None:
        (folder / "authorized_keys").write_text(authorized.read_text())
    return box


@pytest.fixture
def box(rig: Rig, tmp_path: Path) -> Iterator[SshdServer]:
    """A box that lets the daemon's key in (its HOME: tmp_path/home)."""
    server = start_box(tmp_path / "box", rig.key.with_suffix(".pub"), tmp_path / "home")
    yield server
    server.stop()


def target(box: SshdServer) -> str:
    return f"ssh://{box.user}@127.0.0.1:{box.port}"


def keygen_fingerprint(box: SshdServer) -> str:
    shown = subprocess.run(
        ["ssh-keygen", "-lf", f"{box.host_key}.pub"], capture_output=True, text=True, check=True
    )
    return shown.stdout.split()[1]


def same_bytes(remote: Path, library: Path) -> bool:
    """Whether every file under `remote` is in `library` with the same bytes (and no more)."""
    return tree_files(remote) == tree_files(library)


def test_host_key_shown_is_ssh_keygens_and_unconfirmed_or_mismatched_writes_nothing(
    rig: Rig, box: SshdServer
) -> None:
    """The fingerprint `add` shows is `ssh-keygen -lf` of the box's host key. With no
    terminal and neither --yes nor --fingerprint, add refuses (exit 2) naming both flags;
    a --fingerprint that is not the box's is refused (exit 1); neither writes anything."""
    fingerprint = keygen_fingerprint(box)
    asked = rig.ctl("add", "key-a", target(box), "--kind", "forge")
    assert asked.returncode == 2, asked.stderr
    assert f"  ssh-ed25519 {fingerprint}\n" in asked.stdout
    assert f"--fingerprint {fingerprint}, or --yes" in asked.stderr
    assert "nothing written" in asked.stderr
    wrong = "SHA256:" + "A" * 43
    refused = rig.ctl("add", "key-a", target(box), "--kind", "forge", "--fingerprint", wrong)
    assert refused.returncode == 1
    assert f"presents ssh-ed25519 key {fingerprint}, not the {wrong} you gave" in refused.stderr
    assert not rig.knows(box) and not rig.dropin("key-a").exists()


def test_names_in_use_and_options_of_another_transport_are_refused(
    rig: Rig, box: SshdServer
) -> None:
    """A NAME already defined is refused naming the file and line (exit 2) before anything
    is asked; --fingerprint with a docker:// or local: target, --docker-host with another
    than docker://, and --root with local: are refused saying why (exit 2)."""
    taken = rig.ctl("add", "main-box", target(box), "--yes")
    assert taken.returncode == 2
    line = rig.config.read_text().splitlines().index("  - name: main-box") + 1
    assert f"already defined in {rig.config} line {line}" in taken.stderr
    fingerprint = "--fingerprint=SHA256:" + "A" * 43
    for args, said in (
        (["docker://comfy", fingerprint], "--fingerprint applies only to ssh:// targets"),
        (["local:/mnt/out", fingerprint], "--fingerprint applies only to ssh:// targets"),
        (["local:/mnt/out", "--docker-host", "unix:///x"], "--docker-host applies only to"),
        (["local:/mnt/out", "--root", "/x"], "--root does not apply to local: targets"),
    ):
        other = rig.ctl("add", "other-a", *args)
        assert other.returncode == 2
        assert said in other.stderr
    assert not rig.knows(box)


def test_add_local_checks_the_folder_writes_the_dropin_and_remove_takes_it_away(
    rig: Rig, tmp_path: Path
) -> None:
    """`add NAME local:/PATH` refuses a missing folder, a path through a symlink (naming the
    real one) and the library itself; a Forge outputs folder is added as kind forge with
    the drop-in `{name, transport: local, kind, root}`, its first sync copies it
    byte-identical, and `remove` deletes the drop-in (the library stays)."""
    root = forge_outputs(tmp_path / "nas")
    (tmp_path / "link").symlink_to(root)
    for path, said in (
        (tmp_path / "missing", "does not exist on this machine"),
        (
            tmp_path / "link",
            f"goes through a symlink: add the folder by its real path (local:{root})",
        ),
        (rig.work / "media", "overlaps the library"),
    ):
        refused = rig.ctl("add", "nas-a", f"local:{path}")
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    added = rig.ctl("add", "nas-a", f"local:{root}")
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added nas-a: kind forge, root {root}" in added.stdout
    assert yaml.safe_load(rig.dropin("nas-a").read_text()) == {
        "containers": [{"name": "nas-a", "transport": "local", "kind": "forge", "root": str(root)}]
    }
    assert same_bytes(root, rig.work / "media" / "nas-a")
    assert rig.status()["nas-a"]["transport"] == "local"
    assert rig.ctl("remove", "nas-a").returncode == 0
    assert not rig.dropin("nas-a").exists() and "nas-a" not in rig.status()
    assert same_bytes(root, rig.work / "media" / "nas-a")


def test_add_docker_checks_the_container_detects_comfyui_and_syncs(
    rig: Rig, tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """`add NAME docker://CONTAINER --docker-host ...` refuses a missing container and a
    stopped one with the engine's words, finds ComfyUI's output folder in a running one
    (the probe runs in the container), writes `{name, transport: docker, container, kind,
    root, docker: {host}}`, and its first sync copies the folder byte-identical."""
    source = tmp_path / "out"
    write_file(source / "ComfyUI_00001_.png", os.urandom(20_000), OLD)
    write_file(source / "sub" / "ComfyUI_00002_.png", os.urandom(7_000), OLD)
    inside = f"{rig.ws}/ComfyUI/output"  # a probed base of this suite, in the container only
    box = docker_run(docker_engine.gnu_image(), binds={source: inside})
    stopped = docker_run(docker_engine.busybox_image())
    stopped.stop()
    engine = ["--docker-host", docker_engine.host]
    for name, said in (
        ("no-such-box", "no container 'no-such-box' at"),
        (stopped.name, f"container {stopped.name} is not running (its state: exited)"),
    ):
        refused = rig.ctl("add", "comfy-d", f"docker://{name}", *engine)
        assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    added = rig.ctl("add", "comfy-d", f"docker://{box.name}", *engine)
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added comfy-d: kind comfyui, root {inside}" in added.stdout
    assert yaml.safe_load(rig.dropin("comfy-d").read_text())["containers"] == [
        {
            "name": "comfy-d",
            "transport": "docker",
            "container": box.name,
            "kind": "comfyui",
            "root": inside,
            "docker": {"host": docker_engine.host},
        }
    ]
    assert same_bytes(source, rig.work / "media" / "comfy-d")
    assert rig.ctl("remove", "comfy-d").returncode == 0


def forge_outputs(home: Path) -> Path:
    """A Forge/A1111 outputs folder under `home` with a few old images; return it."""
    root = home / "stable-diffusion-webui" / "outputs"
    for index in range(3):
        day = root / "txt2img-images" / "2026-11-24"
        write_file(day / f"0000{index}-42.png", os.urandom(10_000 + index), OLD)
    write_file(root / "img2img-images" / "2026-11-24" / "00000-7.png", os.urandom(777), OLD)
    return root


def test_add_trusts_writes_the_dropin_and_waits_for_the_first_sync(
    rig: Rig, box: SshdServer
) -> None:
    """`add --yes` trusts the key shown (known_hosts gets `[host]:port` plain, as the file
    is), writes `<state_dir>/containers.d/NAME.yaml` (0640, the one container), the
    container appears in status, and the CLI waits for the first sync: exit 0, its result
    line, and the library byte-identical to the box."""
    root = forge_outputs(box.session_home)
    added = rig.ctl("add", "forge-w", target(box), "--yes", "--kind", "forge")
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added forge-w: kind forge, root {root}" in added.stdout
    assert "forge-w: sync success, 4 files," in added.stdout
    dropin = rig.dropin("forge-w")
    assert stat.S_IMODE(dropin.stat().st_mode) == 0o640
    assert yaml.safe_load(dropin.read_text()) == {
        "containers": [
            {
                "name": "forge-w",
                "kind": "forge",
                "host": "127.0.0.1",
                "root": str(root),
                "ssh": {"user": box.user, "port": box.port},
            }
        ]
    }
    keytype, blob = Path(f"{box.host_key}.pub").read_text().split()[:2]
    assert f"[127.0.0.1]:{box.port} {keytype} {blob}\n" in rig.known_hosts.read_text()
    assert rig.status()["forge-w"]["last_sync"]["result"] == "success"  # type: ignore[index]
    assert same_bytes(root, rig.work / "media" / "forge-w")


def test_add_no_wait_returns_at_once_and_the_first_sync_lands(rig: Rig, box: SshdServer) -> None:
    """`add --fingerprint <the box's> --root PATH --no-wait` adds without asking and returns
    before the first sync; the sync then lands the files byte-identical."""
    root = box.session_home / "pictures"
    write_file(root / "a" / "one.png", os.urandom(50_000), OLD)
    write_file(root / "two.webp", os.urandom(1234), OLD)
    added = rig.ctl(
        "add", "plain-w", target(box), "--fingerprint", keygen_fingerprint(box),
        "--root", str(root), "--no-wait",
    )  # fmt: skip
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added plain-w: kind generic, root {root}" in added.stdout
    assert "first sync started" in added.stdout and "sync success" not in added.stdout
    assert "plain-w" in rig.status()
    library = rig.work / "media" / "plain-w"
    wait_until(lambda: same_bytes(root, library), what="the first sync")


def test_refused_key_prints_the_daemons_public_key_line_and_writes_nothing(
    rig: Rig, tmp_path: Path
) -> None:
    """A box whose authorized_keys lacks the daemon's key: exit 1, the exact public-key line
    of the daemon (its .pub) printed on a line of its own, where RunPod and vast.ai take
    it, and nothing written (neither known_hosts nor a drop-in)."""
    box = start_box(tmp_path / "box", None)
    try:
        refused = rig.ctl("add", "nokey-a", target(box), "--yes", "--kind", "forge")
    finally:
        box.stop()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    public = rig.key.with_suffix(".pub").read_text().strip()
    assert public in refused.stdout.splitlines()
    assert f"~{box.user}/.ssh/authorized_keys" in refused.stdout
    assert "RunPod" in refused.stdout and "vast.ai" in refused.stdout
    assert "Nothing was written" in refused.stdout
    assert not rig.knows(box) and not rig.dropin("nokey-a").exists()


LAYOUTS = (
    # base, the output folder under it, where the image is in it, the front end add names
    ("ws", "stable-diffusion-webui/outputs", "txt2img-images/2026-11-24", "Forge/A1111"),
    ("rootfs", "stable-diffusion-webui-forge/outputs", "txt2img-images/2026-11-24", "Forge"),
    ("home", "ComfyUI/output", "", "ComfyUI"),
    ("home", "invokeai/outputs/images", "", "InvokeAI"),
    ("rootfs", "Fooocus/outputs", "2026-11-24", "Fooocus"),
    ("ws", "SwarmUI/Output", "local/raw/2026-11-24", "SwarmUI"),
)


def test_detection_finds_each_front_end_under_workspace_root_and_home(
    rig: Rig, box: SshdServer
) -> None:
    """Forge/A1111, Forge, ComfyUI, InvokeAI, Fooocus and SwarmUI output folders are found
    under /workspace, / and HOME (a symlink to one of them listed once) with their files
    and bytes; several fit, so with no terminal add asks for --kind and --root (exit 2,
    nothing written); --root then decides without asking."""
    bases = {"ws": rig.ws, "rootfs": rig.rootfs, "home": box.session_home}
    try:
        for base, folder, inside, _app in LAYOUTS:
            write_file(bases[base] / folder / inside / "x.png", b"x" * 2048, OLD)
        (box.session_home / "SwarmUI").symlink_to(rig.ws / "SwarmUI")
        asked = rig.ctl("add", "detect-a", target(box), "--yes")
        assert asked.returncode == 2, asked.stdout + asked.stderr
        for base, folder, _inside, app in LAYOUTS:
            line = f"{app:<12} {bases[base] / folder}  1 file, 2.0 KiB\n"
            assert line in asked.stdout, (line, asked.stdout)
        assert asked.stdout.count("SwarmUI/Output") == 1
        assert "pass --kind and --root" in asked.stderr
        assert not rig.dropin("detect-a").exists() and not rig.knows(box)
        swarm = rig.ws / "SwarmUI" / "Output"
        chosen = rig.ctl("add", "detect-a", target(box), "--yes", "--root", str(swarm), "--no-wait")
        assert chosen.returncode == 0, chosen.stdout + chosen.stderr
        assert f"added detect-a: kind generic, root {swarm}" in chosen.stdout
        assert rig.ctl("remove", "detect-a", "--force").returncode == 0
    finally:
        for base in (rig.ws, rig.rootfs):
            for child in base.iterdir():
                subprocess.run(["rm", "-rf", str(child)], check=True)


def comfyui_process(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start a process whose arguments look like ComfyUI's: python3 .../ComfyUI/main.py
    ARGS (it only sleeps)."""
    script = folder / "ComfyUI" / "main.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("import time\ntime.sleep(300)\n")
    return subprocess.Popen([sys.executable, str(script), *args], cwd=script.parent)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def test_comfyui_started_with_output_directory_is_found(
    rig: Rig, box: SshdServer, tmp_path: Path
) -> None:
    """A running ComfyUI started with `--output-directory DIR` makes DIR a candidate (shown
    with its process), beside HOME's ComfyUI/output; --root DIR adds it as kind comfyui."""
    out = tmp_path / "comfy-out"
    write_file(out / "ComfyUI_00001_.png", b"p" * 3000, OLD)
    write_file(box.session_home / "ComfyUI" / "output" / "ComfyUI_00001_.png", b"q", OLD)
    process = comfyui_process(tmp_path / "app", "--listen", "--output-directory", str(out))
    try:
        asked = rig.ctl("add", "comfy-p", target(box), "--yes")
    finally:
        stop(process)
    assert asked.returncode == 2, asked.stdout + asked.stderr
    assert f"ComfyUI      {out}  1 file, 2.9 KiB  (process {process.pid}: --output-directory)" in (
        asked.stdout
    )
    process = comfyui_process(tmp_path / "app", "--output-directory", str(out))
    try:
        added = rig.ctl("add", "comfy-p", target(box), "--yes", "--root", str(out), "--no-wait")
    finally:
        stop(process)
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"added comfy-p: kind comfyui, root {out}" in added.stdout


def test_hostile_processes_and_names_run_nothing_and_are_bounded(rig: Rig, tmp_path: Path) -> None:
    """A ComfyUI whose --output-directory holds `$(...)`, a newline and a terminal escape, a
    ComfyUI with 1 MB of arguments before its --output-directory, and a HOME whose name holds
    `$(...)`: the probe runs nothing (no PWNED file), reads at most 32 KiB of arguments (the
    late folder is never seen), drops the escaped folder with a note and shows the hostile
    HOME's folder by its literal name."""
    home = tmp_path / "home $(touch PWNED) `touch PWNED`"
    write_file(home / "Fooocus" / "outputs" / "x.png", b"f", OLD)
    write_file(home / "ComfyUI" / "output" / "y.png", b"c", OLD)
    late = tmp_path / "late-out"
    late.mkdir()
    big = ["A" * (128 * 1024 - 1)] * 8  # the kernel's limit for one argument is 128 KiB
    evil = f"{tmp_path}/x/$(touch PWNED)\n\x1b]0;owned\x07"
    hostile = comfyui_process(tmp_path / "a", "--output-directory", evil, *big)
    buried = comfyui_process(tmp_path / "b", *big, "--output-directory", str(late))
    box = start_box(tmp_path / "box", rig.key.with_suffix(".pub"), home)
    try:
        asked = rig.ctl("add", "hostile-a", target(box), "--yes")
    finally:
        box.stop()
        stop(hostile)
        stop(buried)
    assert asked.returncode == 2, asked.stdout + asked.stderr
    for folder in (tmp_path, Path.cwd(), Path.home()):
        assert not (folder / "PWNED").exists()
    assert not [path for path in tmp_path.rglob("PWNED")]
    assert f"Fooocus      {home}/Fooocus/outputs  1 file, 1 B" in asked.stdout
    assert str(late) not in asked.stdout
    assert (
        f"note: ComfyUI process {hostile.pid}: its --output-directory was not read back intact"
        in asked.stdout
    )
    assert "\x1b" not in asked.stdout and "owned" not in asked.stdout


def test_remove_guards_media_at_risk_and_hand_written_containers(rig: Rig, box: SshdServer) -> None:
    """`remove` refuses while the box holds files the library has not got (exit 1, naming
    `drain`), `--force` removes the drop-in and the container; its library and history stay.
    A container of the main config, or of an admin's drop-in, is refused with its file and
    line (exit 1); an unknown one is exit 2."""
    root = box.session_home / "out"
    write_file(root / "old.png", b"old" * 1000, OLD)
    added = rig.ctl("add", "rm-a", target(box), "--yes", "--root", str(root))
    assert added.returncode == 0, added.stdout + added.stderr
    write_file(root / "fresh.png", b"fresh", time.time())  # settling: at risk
    assert rig.ctl("sync", "rm-a", "--wait").returncode == 0
    assert rig.status()["rm-a"]["remote_only"]["files"] == 1  # type: ignore[index]
    refused = rig.ctl("remove", "rm-a")
    assert refused.returncode == 1
    assert "rm-a holds 1 file (5 B) not yet in the library" in refused.stderr
    assert "forge-syncctl drain rm-a" in refused.stderr
    assert rig.dropin("rm-a").exists() and "rm-a" in rig.status()
    forced = rig.ctl("remove", "rm-a", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"removed rm-a: {rig.dropin('rm-a')} deleted" in forced.stdout
    assert not rig.dropin("rm-a").exists() and "rm-a" not in rig.status()
    assert (rig.work / "media" / "rm-a" / "old.png").read_bytes() == b"old" * 1000
    history = rig.ctl("history", "rm-a")
    assert history.returncode == 0 and "rm-a" in history.stdout

    main = rig.ctl("remove", "main-box")
    line = rig.config.read_text().splitlines().index("  - name: main-box") + 1
    assert main.returncode == 1
    assert f"'main-box' is defined in {rig.config} line {line}, not by `forge-syncctl add`" in (
        main.stderr
    )
    assert rig.ctl("remove", "no-such-box").returncode == 2


def test_remove_refuses_an_admins_dropin(rig: Rig, box: SshdServer) -> None:
    """A container in a hand-written drop-in (`forge-sync.d/` beside the config) is named
    for the admin to remove, with its file and line; the file is left alone."""
    folder = rig.config.parent / "forge-sync.d"
    folder.mkdir(exist_ok=True)
    hand = folder / "50-hand.yaml"
    hand.write_text(
        "# by hand\ncontainers:\n"
        f"  - {{name: hand-box, kind: generic, host: 127.0.0.1, root: /nowhere,\n"
        f"     ssh: {{user: {box.user}, port: {box.port}}}}}\n"
    )
    try:
        refused = rig.ctl("remove", "hand-box")
    finally:
        hand.unlink()
    assert refused.returncode == 1
    assert f"'hand-box' is defined in {hand} line 3" in refused.stderr


def test_a_person_at_a_terminal_confirms_the_key_and_picks_the_folder(
    rig: Rig, box: SshdServer
) -> None:
    """On a terminal, add shows the key and asks; a `y` trusts it; two folders of the kind
    asked for fit, so it lists them and asks which; the number typed picks the root."""
    forge_outputs(box.session_home)
    second = box.session_home / "stable-diffusion-webui-forge" / "outputs"
    write_file(second / "txt2img-images" / "d" / "1.png", b"2", OLD)
    fd, terminal = pty.openpty()
    os.set_inheritable(terminal, True)
    args = ["add", "tty-a", target(box), "--kind", "forge", "--no-wait"]
    person = subprocess.Popen(
        [str(BIN / "forge-syncctl"), "--socket", str(rig.socket), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200", "TERM": "dumb"},
    )
    os.close(terminal)
    seen = b""
    answers = [(b"[y/N]", b"y\n"), (b"Which one to sync? [1-2]", b"2\n")]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and person.poll() is None:
            if select.select([fd], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(fd, 65536)
            if answers and answers[0][0] in seen:
                os.write(fd, answers.pop(0)[1])
        with contextlib.suppress(OSError):
            while select.select([fd], [], [], 0.2)[0]:
                seen += os.read(fd, 65536)
    finally:
        if person.poll() is None:
            person.kill()
        person.wait()
        os.close(fd)
    text = seen.decode(errors="replace").replace("\r\n", "\n")
    assert person.returncode == 0, text
    assert f"ssh-ed25519 {keygen_fingerprint(box)}" in text
    assert f"[2] Forge {second}" in text
    assert f"added tty-a: kind forge, root {second}" in text
