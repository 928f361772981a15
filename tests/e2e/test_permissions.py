"""Who may do what, as on an installed system: the daemon runs as its own unprivileged user;
the control socket belongs to `control.group`, whose members (operators) use forge-syncctl
and cannot read the SSH key; others are refused; the library's folders and files get
`library:`'s modes and group whatever the daemon's umask.

Real accounts: the tests create temporary groups and users (they run as root) and remove
them after. Other users cannot run the test venv's interpreter (it lives under /root, 0700),
so they run the same code with the system's python3 and the venv's packages (`run_as`).
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import BIN
from tests.support.daemon import read_log, wait_until
from tests.support.sshd import SshdServer
from tests.support.trees import write_file

NO_CONTAINERS = "no containers configured: forge-syncctl add NAME ssh://user@host:port"

SITE = next(p for p in sys.path if p.endswith("site-packages"))
BOOT = (
    "import runpy, site, sys; site.addsitedir(sys.argv[1]); del sys.argv[:2];"
    " runpy.run_module(sys.argv[0], run_name='__main__')"
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not Path("/usr/bin/python3").exists(),
    reason="needs root, useradd and the system's python3",
)


@dataclass
class Accounts:
    """`daemon`: the daemon's user (own group), a member of `ctl` and `library`;
    `operator`: a member of `ctl` only; `outsider`: of neither."""

    daemon: str
    operator: str
    outsider: str
    ctl: str
    library: str

    def gid(self, group: str) -> int:
        return grp.getgrnam(group).gr_gid

    def uid(self, user: str) -> int:
        return pwd.getpwnam(user).pw_uid


@pytest.fixture(scope="module")
def accounts() -> Iterator[Accounts]:
    """Temporary groups and users (random names), removed after the module."""
    tag = secrets.token_hex(3)
    made = Accounts(f"fsd{tag}d", f"fsd{tag}op", f"fsd{tag}out", f"fsd{tag}ctl", f"fsd{tag}lib")
    groups = [made.ctl, made.library]
    users = [
        (made.daemon, [made.ctl, made.library]),
        (made.operator, [made.ctl]),
        (made.outsider, []),
    ]
    try:
        for group in groups:
            subprocess.run(["groupadd", "--system", group], check=True)
        for user, member_of in users:
            extra = ["-G", ",".join(member_of)] if member_of else []
            subprocess.run(
                ["useradd", "--system", "--user-group", "--no-create-home", *extra, user],
                check=True,
            )
        yield made
    finally:
        for user, _ in users:
            subprocess.run(["userdel", user], check=False, capture_output=True)
        for group in groups:
            subprocess.run(["groupdel", group], check=False, capture_output=True)


def run_as(user: str, module: str, *args: str, umask: int = 0o022) -> subprocess.Popen[str]:
    """Start `python3 -m module args` as `user` (its own group and supplementary groups)."""
    return subprocess.Popen(
        [
            "setpriv",
            f"--reuid={user}",
            f"--regid={user}",
            "--init-groups",
            "--",
            "/usr/bin/python3",
            "-c",
            BOOT,
            SITE,
            module,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        umask=umask,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"},
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.fixture
def work() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp folders are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="fsd-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def layout(work: Path, accounts: Accounts, key: Path, extra: str) -> Path:
    """Lay out an installed system under `work`: the key folder 0750 root:<daemon's group>,
    the key 0600 the daemon's, its state, library, runtime and log folders; return the
    config's path."""
    daemon_uid = accounts.uid(accounts.daemon)
    daemon_gid = accounts.gid(accounts.daemon)
    keys = work / "etc-forge-sync"
    keys.mkdir(mode=0o750)
    os.chown(keys, 0, daemon_gid)
    shutil.copy(key, keys / "id_ed25519")
    os.chown(keys / "id_ed25519", daemon_uid, daemon_gid)
    (keys / "id_ed25519").chmod(0o600)
    for folder in ("state", "media", "run", "log"):
        (work / folder).mkdir(mode=0o700)
        os.chown(work / folder, daemon_uid, daemon_gid)
    config = work / "forge-sync.yaml"
    config.write_text(
        f"""\
media_root: {work}/media
state_dir: {work}/state
log: {{level: debug, file: {work}/log/forge-syncd.jsonl}}
control: {{socket: {work}/run/control.sock, group: {accounts.ctl}}}
metrics: {{listen: null}}
{extra}"""
    )
    return config


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_operators_use_the_socket_through_its_group_and_cannot_read_the_key(
    accounts: Accounts, work: Path, sshd: SshdServer
) -> None:
    """The daemon, unprivileged, gives its 0660 socket to `control.group` (of which it is a
    member); an operator in that group runs `forge-syncctl status` (exit 0) but cannot read
    the SSH key (0600, the daemon's); a user in neither group is refused, told which group
    lets them in."""
    config = layout(work, accounts, sshd.client_key, "containers: []\n")
    daemon = run_as(accounts.daemon, "forge_syncd.cli.syncd", "--config", str(config))
    socket_path = work / "run" / "control.sock"
    try:
        wait_until(lambda: socket_path.exists() or daemon.poll() is not None, what="socket")
        assert daemon.poll() is None, daemon.communicate()
        info = socket_path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, accounts.gid(accounts.ctl))
        assert info.st_uid == accounts.uid(accounts.daemon)
        (work / "run").chmod(0o755)  # as the unit's RuntimeDirectoryMode

        code, out, err = finished(
            run_as(
                accounts.operator, "forge_syncd.cli.syncctl", "--socket", str(socket_path), "status"
            )
        )
        assert code == 0, err
        assert out.splitlines()[1] == NO_CONTAINERS
        key = work / "etc-forge-sync" / "id_ed25519"
        peek = subprocess.run(
            [
                "setpriv",
                f"--reuid={accounts.operator}",
                f"--regid={accounts.operator}",
                "--init-groups",
                "--",
                "cat",
                str(key),
            ],
            capture_output=True,
        )
        assert peek.returncode != 0 and peek.stdout == b""
        assert b"Permission denied" in peek.stderr

        code, out, err = finished(
            run_as(
                accounts.outsider, "forge_syncd.cli.syncctl", "--socket", str(socket_path), "status"
            )
        )
        assert code == 3 and out == ""
        assert err.splitlines()[0] == (
            f"forge-syncctl: cannot reach forge-syncd at {socket_path}: Permission denied (only"
            f" root and members of group {accounts.ctl} may use it: sudo usermod -aG"
            f" {accounts.ctl} $USER, then log in again)"
        )
    finally:
        stop(daemon)
    events = [r["event"] for r in read_log(work / "log" / "forge-syncd.jsonl")]
    assert "control_group_missing" not in events and "control_group_refused" not in events


def test_a_control_group_that_does_not_exist_keeps_the_daemons_group(
    tmp_path: Path,
) -> None:
    """`control.group` naming no group: the socket keeps the daemon's group, and
    `control_group_missing` is logged once; the daemon runs."""
    config = tmp_path / "forge-sync.yaml"
    config.write_text(
        f"media_root: {tmp_path}/media\nstate_dir: {tmp_path}/state\n"
        f"log: {{file: {tmp_path}/log.jsonl}}\nmetrics: {{listen: null}}\n"
        f"control: {{socket: {tmp_path}/run/control.sock, group: no-such-group-xyz}}\n"
    )
    daemon = subprocess.Popen([str(BIN / "forge-syncd"), "--config", str(config)])
    try:
        wait_until(lambda: (tmp_path / "run" / "control.sock").exists(), what="socket")
        assert (tmp_path / "run" / "control.sock").stat().st_gid == os.getegid()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    missing = [r for r in read_log(tmp_path / "log.jsonl") if r["event"] == "control_group_missing"]
    assert len(missing) == 1 and missing[0]["group"] == "no-such-group-xyz"


def test_library_files_and_folders_get_the_modes_and_group_under_umask_0077(
    accounts: Accounts, work: Path, sshd: SshdServer
) -> None:
    """A real sync by the unprivileged daemon (umask 0077, library folder 0700 without
    setgid, so nothing is inherited): every folder it makes (the container's, subfolders,
    `.versions/`) has exactly dir_mode and the library's group, every file landed or
    versioned exactly file_mode and that group."""
    remote = work / "remote"
    write_file(remote / "a.png", b"first" * 1000, 1.7e9)
    write_file(remote / "sub" / "deep" / "b.png", os.urandom(3000), 1.7e9)
    known_hosts = work / "known_hosts"
    shutil.copy(sshd.known_hosts, known_hosts)
    known_hosts.chmod(0o644)
    config = layout(
        work,
        accounts,
        sshd.client_key,
        f"""\
library: {{group: {accounts.library}, file_mode: "0660", dir_mode: "2770"}}
defaults:
  ssh: {{user: {sshd.user}, identity_file: {work}/etc-forge-sync/id_ed25519,
         known_hosts: {known_hosts}, port: {sshd.port}, connect_timeout: 5s}}
  sync: {{settle: 0s, interval: 1h, watch: false}}
containers:
  - {{name: forge-a, kind: generic, host: 127.0.0.1, root: {remote}}}
""",
    )
    daemon = run_as(accounts.daemon, "forge_syncd.cli.syncd", "--config", str(config), umask=0o077)
    container = work / "media" / "forge-a"
    socket_path = work / "run" / "control.sock"
    try:
        wait_until(lambda: (container / "sub" / "deep" / "b.png").exists(), what="first sync")
        wait_until(lambda: socket_path.exists(), what="socket")
        write_file(remote / "a.png", b"second" * 1000, 1.7e9 + 60)  # the name reused
        ctl = [str(BIN / "forge-syncctl"), "--socket", str(socket_path)]
        synced = subprocess.run(
            [*ctl, "sync", "--wait"], capture_output=True, text=True, timeout=60
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
    finally:
        stop(daemon)
    folders, files = [container], []
    for parent, dirs, names in os.walk(container):
        folders += [Path(parent) / d for d in dirs]
        files += [Path(parent) / n for n in names]
    assert any(".versions" in f.parts for f in files), files
    assert len(files) == 3
    library_gid = accounts.gid(accounts.library)
    daemon_uid = accounts.uid(accounts.daemon)
    for folder in folders:
        info = folder.stat()
        assert (folder, stat.S_IMODE(info.st_mode), info.st_gid) == (folder, 0o2770, library_gid)
        assert info.st_uid == daemon_uid
    for file in files:
        info = file.stat()
        assert (file, stat.S_IMODE(info.st_mode), info.st_gid) == (file, 0o660, library_gid)
    assert (work / "media").stat().st_gid == accounts.gid(accounts.daemon)  # not made by it


def test_a_library_group_the_daemon_is_not_in_refuses_to_start(
    accounts: Accounts, work: Path, sshd: SshdServer
) -> None:
    """`library.group` naming a group the daemon's user is not a member of: exit 1 with
    what to do, before anything is made in the library."""
    config = layout(work, accounts, sshd.client_key, f"library: {{group: {accounts.outsider}}}\n")
    code, _out, err = finished(
        run_as(accounts.daemon, "forge_syncd.cli.syncd", "--config", str(config))
    )
    assert code == 1
    assert err.strip() == (
        f"forge-syncd: cannot start: library.group: this process (user {accounts.daemon}) is"
        f" not a member of group {accounts.outsider!r}: add it (usermod -aG {accounts.outsider}"
        f" {accounts.daemon}, or SupplementaryGroups={accounts.outsider} in the unit), then"
        " restart"
    )
    assert os.listdir(work / "media") == []
