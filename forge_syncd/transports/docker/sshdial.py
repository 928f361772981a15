"""An engine at `ssh://[user@]host[:port]`, reached as Docker's own CLI reaches it: the
OpenSSH client runs `docker system dial-stdio` on that host, and the Engine API is spoken
over that process's stdin and stdout.

Each connection to the engine is one `ssh` process whose stdin and stdout are one end of a
socket pair: the engine client gets the other end, a real socket (timeouts, a half-close
that ends an exec's stdin), so the unix-socket code paths stay the same. The client runs
with BatchMode=yes (never a prompt), StrictHostKeyChecking=yes, IdentitiesOnly=yes, and the
daemon's key and known_hosts (`defaults.ssh.identity_file` and `known_hosts`: the ones
`forge-syncd --keygen` and `forge-syncctl add` use), and shares one SSH connection per
engine between dials (ControlMaster, its socket in a private folder: `control_folder`;
named after the key and known_hosts too, so a dial never rides a connection that other
settings checked). When the socket is closed the process is ended and reaped. What it
printed on stderr (ssh's refusal, the remote `docker` CLI's error) is kept, bounded, for the
error a failed request raises.
"""

from __future__ import annotations

import _socket
import contextlib
import hashlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from forge_syncd.config.dockerhost import SshEngine
from forge_syncd.config.model import SshConfig

SSH = "ssh"
STDERR_KEPT = 400  # bytes of ssh's stderr quoted in an error
EXIT_WAIT_S = 2.0  # how long a failed dial's ssh is given to say why and exit
# Dials share one SSH connection per engine (OpenSSH's multiplexing), kept this long after
# the last one: a dial then costs the remote `docker` CLI's start, not a handshake.
CONTROL_PERSIST_S = 60
CONTROL_FOLDER = "forge-syncd-ssh-{uid}"  # under the temporary folder, 0700, ours


def control_folder() -> Path | None:
    """Return the private folder of the shared connections' sockets (made 0700 when
    missing), or None (no sharing) when it is not a folder of ours that only we can use."""
    folder = Path(tempfile.gettempdir()) / CONTROL_FOLDER.format(uid=os.getuid())
    with contextlib.suppress(FileExistsError, OSError):
        folder.mkdir(mode=0o700)
    try:
        info = folder.lstat()
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
    return folder if private and info.st_uid == os.getuid() else None


def _settings_tag(ssh: SshConfig) -> str:
    """A short tag of the key and known_hosts a dial uses (part of its ControlPath)."""
    named = f"{ssh.identity_file}\0{ssh.known_hosts}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(named).hexdigest()[:12]


def ssh_argv(engine: SshEngine, ssh: SshConfig) -> list[str]:
    """Return the argv of one dial: OpenSSH to `engine` with the daemon's key, known_hosts
    and connect timeout, no prompt, no terminal, running `docker system dial-stdio`."""
    argv = [
        shutil.which(SSH) or SSH,
        "-T",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={ssh.known_hosts}",
        "-o", f"ConnectTimeout={max(1, round(ssh.connect_timeout_s))}",
        "-o", f"ServerAliveInterval={max(1, round(ssh.keepalive_s))}",
        "-o", "LogLevel=ERROR",
        "-i", str(ssh.identity_file),
        "-p", str(engine.port),
    ]  # fmt: skip
    folder = control_folder()
    if folder is not None:
        argv += [
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={folder}/%C-{_settings_tag(ssh)}",
            "-o", f"ControlPersist={CONTROL_PERSIST_S}",
        ]  # fmt: skip
    if engine.user:
        argv += ["-l", engine.user]
    return [*argv, "--", engine.host, "docker", "system", "dial-stdio"]


class DialedSocket(socket.socket):
    """Our end of a dial: a socket whose last close also ends and reaps its `ssh`."""

    process: subprocess.Popen[bytes] | None = None
    stderr: IO[bytes] | None = None
    kept = ""

    def said(self) -> str:
        """What the dial's ssh printed on stderr (waiting briefly for it to exit when it is
        still running), bounded and printable; "" when nothing. Kept once the socket is
        closed (a failed HTTP exchange closes it before the error is told)."""
        process, stderr = self.process, self.stderr
        if process is None or stderr is None:
            return self.kept
        deadline = time.monotonic() + EXIT_WAIT_S
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return _printable(stderr)

    def _real_close(self, _ss: Any = _socket.socket) -> None:
        """What `socket.close` calls once no file made by `makefile` still uses the socket
        (an HTTP response being read): the fd is closed, then the ssh process ended."""
        _ss.close(self)
        self._end()

    def _end(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        elif process is not None:
            process.wait()
        stderr, self.stderr = self.stderr, None
        if stderr is not None:
            self.kept = _printable(stderr)
            stderr.close()


def _printable(stderr: IO[bytes]) -> str:
    """The start of a dial's stderr file: one line of printable text."""
    try:
        text = os.pread(stderr.fileno(), STDERR_KEPT, 0).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def dial(engine: SshEngine, ssh: SshConfig, timeout: float) -> DialedSocket:
    """Start one `ssh ... docker system dial-stdio`; return our end of its stdin/stdout
    (`timeout` on each read and write). Raise OSError when ssh cannot be started."""
    ours, theirs = socket.socketpair()
    sock = DialedSocket(ours.family, ours.type, ours.proto, ours.detach())
    sock.settimeout(timeout)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the socket)
    try:
        sock.process = subprocess.Popen(  # our own argv, no shell
            ssh_argv(engine, ssh),
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=stderr,
            start_new_session=True,  # no terminal's signals, no terminal to prompt on
        )
    except OSError:
        stderr.close()
        sock.close()
        raise
    finally:
        theirs.close()
    sock.stderr = stderr
    return sock
