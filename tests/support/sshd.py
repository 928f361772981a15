"""A throwaway OpenSSH server on 127.0.0.1 for tests, benchmarks and the demo.

Given a scratch folder, `SshdServer.start()` writes its own host key, client key,
authorized_keys, known_hosts and sshd_config there, starts the real `/usr/sbin/sshd` on a
free port and waits until it accepts connections. `stop()` ends it. Nothing on the machine
outside the scratch folder is changed except that `/run/sshd` (sshd's privilege-separation
folder) is created when missing.

Sessions get an empty HOME of their own (`SetEnv HOME=...`), so the login scripts of the
account the tests run as (root's `~/.bashrc` runs `pyenv rehash`, which hangs 60 s on a lock
a killed session left behind) never run in a test session. A test that wants a `.bashrc`
prepares a folder and passes it as `home`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_key(path: Path, comment: str = "forge-sync-test", key_type: str = "ed25519") -> str:
    """Create a key pair of `key_type` (ed25519, ecdsa, rsa) at `path` (and `path.pub`);
    return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshdServer:
    """One sshd process. `path_dirs` (if set) become the remote sessions' PATH, first
    (then /usr/bin and /bin, unless `only_path_dirs`);
    `home` (if set) is the sessions' HOME, else an empty folder `workdir/home`;
    `host_key_types` are the host keys it offers (the first is `host_key`);
    `extra_config` lines are appended to its sshd_config (replacing ours of the same
    keyword: `MaxStartups 2`)."""

    workdir: Path
    path_dirs: list[Path] = field(default_factory=list)
    only_path_dirs: bool = False
    extra_config: list[str] = field(default_factory=list)  # more sshd_config lines
    home: Path | None = None
    host_key_types: tuple[str, ...] = ("ed25519",)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def user(self) -> str:
        return getpass.getuser()

    @property
    def client_key(self) -> Path:
        return self.workdir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def host_key(self) -> Path:
        return self.workdir / f"host_{self.host_key_types[0]}"

    @property
    def session_home(self) -> Path:
        """Return the HOME that remote sessions get (`home`, else the empty `workdir/home`)."""
        return self.home if self.home is not None else self.workdir / "home"

    def host_key_line(self, host: str = "127.0.0.1") -> str:
        """Return the known_hosts line for this server as reached at `host`."""
        keytype, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{host}]:{self.port} {keytype} {blob}\n"

    def start(self) -> SshdServer:
        """Write keys and config, start sshd, wait until it accepts. Return self."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for key_type in self.host_key_types:
            if not (self.workdir / f"host_{key_type}").exists():
                make_key(self.workdir / f"host_{key_type}", "forge-sync-test-host", key_type)
        if not self.client_key.exists():
            client_pub = make_key(self.client_key)
            (self.workdir / "authorized_keys").write_text(client_pub + "\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.session_home.mkdir(mode=0o755, exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            self._write_config()
            self.known_hosts.write_text(self.host_key_line())
            self.launch()
            if self.wait_listening():
                return self
            self.stop()
        raise RuntimeError(f"sshd did not start; see {self.workdir / 'sshd.log'}")

    def _write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            *(f"HostKey {self.workdir / f'host_{key_type}'}" for key_type in self.host_key_types),
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "MaxSessions 64",
            "MaxStartups 200",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
        ]
        # sshd keeps only the first SetEnv line it reads: every variable goes on this one.
        session_env = [f"HOME={self.session_home}"]
        if self.path_dirs:
            system = [] if self.only_path_dirs else ["/usr/bin", "/bin"]
            search = ":".join([*map(str, self.path_dirs), *system])
            session_env.append(f"PATH={search}")
        lines.append("SetEnv " + " ".join(f'"{item}"' for item in session_env))
        # sshd keeps the first value it reads of a keyword: an extra line replaces ours.
        replaced = {line.split()[0].lower() for line in self.extra_config if line.strip()}
        lines = [line for line in lines if line.split()[0].lower() not in replaced]
        lines += self.extra_config
        (self.workdir / "sshd_config").write_text("\n".join(lines) + "\n")

    def launch(self) -> None:
        """Start sshd on the configured port (its log appended to sshd.log)."""
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.workdir / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "sshd.log", "ab"),  # noqa: SIM115
        )

    def wait_listening(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop sshd (and with it every session it started)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def env_for_tools(self) -> dict[str, str]:
        """Return an environment for running `ssh`/`rsync` against this server."""
        return dict(os.environ)

    def ssh_command(self) -> list[str]:
        """Return the OpenSSH client argv (without the destination) for this server."""
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
