"""One SSH connection per container, reused for everything in a run.

`connect()` opens the TCP socket, negotiates (AES-GCM first), checks the host key against
known_hosts and authenticates with the configured key. Failures come out as the classified
errors of `forge_syncd.remote.errors`, never as paramiko's own exceptions.

The exec I/O lives here too: the start marker every remote script prints, running a command
and reading its output within limits, and running a script on the shell `shells.py` started
for it ahead of time. paramiko's private parts are reached only through `paramiko_patch`.
"""

from __future__ import annotations

import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import paramiko

from forge_syncd.config.model import SshConfig
from forge_syncd.remote.errors import AuthError, ConnectError, RemoteError
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult
from forge_syncd.transports.ssh.hostkeys import check_host_key, known_key_types, prefer_known_types
from forge_syncd.transports.ssh.paramiko_patch import install_chunk_pipe, set_rekey_limits
from forge_syncd.transports.ssh.shells import NOT_RELEASED, ShellPool, close_quietly
from forge_syncd.transports.ssh.window import window_for

# GCM needs no separate MAC and is ~1.8x faster than paramiko's default aes128-ctr + hmac.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# paramiko's own rekey every 512 MiB races with in-flight data (paramiko#822). Leave
# rekeying to the server, whose RekeyLimit defaults are sane.
NO_CLIENT_REKEY = 2**62
MAX_EXEC_OUTPUT = 512 * 1024 * 1024
CHUNK = 256 * 1024
IDLE_POLL_S = 1.0  # how often an idle transport thread wakes (paramiko: 0.1 s)


# Every remote script prints this first (`sh_command`); readers skip whatever comes before
# it: a container login shell whose `.bashrc` prints a banner to stdout would otherwise
# corrupt the first listing record and the tar stream. Random per process, so that no file
# name or banner holds it by chance.
_MARKER_ID = secrets.token_hex(6)
START_MARKER = b"\x1eforge-syncd:" + _MARKER_ID.encode() + b"\x1e"
MAX_PREAMBLE = 1024 * 1024  # what a login shell may print before the marker


def sh_command(script: str) -> str:
    """Given a POSIX sh script, return a command line that runs it under `sh -c`, printing
    START_MARKER before anything the script prints."""
    marked = f"printf '\\036forge-syncd:{_MARKER_ID}\\036'\n{script}"
    return "sh -c " + "'" + marked.replace("'", "'\\''") + "'"


def after_marker(output: bytes) -> bytes:
    """Given a remote script's stdout, return what the script printed (after the start
    marker). Raise RemoteError if the marker is missing: the script never ran."""
    index = output.find(START_MARKER, 0, MAX_PREAMBLE + len(START_MARKER))
    if index < 0:
        raise RemoteError("the remote shell did not run the command (no start marker)")
    return output[index + len(START_MARKER) :]


class Connection:
    """An authenticated SSH transport to one container. Thread-safe for separate channels."""

    def __init__(
        self,
        transport: paramiko.Transport,
        host: str,
        port: int,
        idle_timeout_s: float = 120.0,
        rtt_s: float | None = None,
    ) -> None:
        """`idle_timeout_s`: how long any channel may go without a byte before the peer
        counts as stalled (a connection that stops forwarding without closing); `rtt_s`:
        the round-trip time if known, else measured on the first channels opened,
        which sizes the channels' receive windows (`window.py`)."""
        self.transport = transport
        self.host = host
        self.port = port
        self.idle_timeout_s = idle_timeout_s
        self.rtt_s = rtt_s
        # How many connections to the container transfer together (extra ones of a run,
        # `lanes.py`): each then gets its share of the container's window budget.
        self.window_share = 1
        self._when_measured: list[Callable[[], None]] = []
        self._measured_lock = threading.Lock()
        # Shells started ahead of time: a repeated script's next run (`run_script`), the
        # tar stream's (`TarStrategy.prepare`).
        self.shells = ShellPool(self.start_script)

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    def _observe_rtt(self, seconds: float) -> None:
        """Take a channel open (one request, one answer: one round trip, counted from
        inside SSH so a proxy or tunnel on the way counts) as a sample of the round-trip
        time; keep the shortest seen. The first channel (the capability probe) measures
        it for free before any transfer channel is opened."""
        if self.rtt_s is None or seconds < self.rtt_s:
            self.rtt_s = seconds

    def when_measured(self, action: Callable[[], None]) -> None:
        """Run `action` (it must not block) once the round trip is measured: at once if it
        is, else right after the first channel opened (a channel opened before would get
        the smallest window, whatever the path)."""
        with self._measured_lock:
            if self.rtt_s is None:
                self._when_measured.append(action)
                return
        action()

    def window(self, channels: int = 1) -> int:
        """Return the receive window of each of `channels` channels transferring at once."""
        return window_for(self.rtt_s or 0.0, channels * self.window_share)

    def open_sftp(self, channels: int = 1) -> paramiko.SFTPClient:
        """Return a new SFTP session on this connection (one per worker thread; `channels`:
        how many transfer at once, sharing the window budget)."""
        try:
            client = paramiko.SFTPClient.from_transport(
                self.transport, window_size=self.window(channels)
            )
        except (paramiko.SSHException, paramiko.SFTPError, OSError, EOFError) as exc:
            raise RemoteError(f"cannot open SFTP session: {exc}") from exc
        if client is None:
            raise RemoteError("cannot open SFTP session")
        channel = client.get_channel()
        if channel is not None:
            channel.settimeout(self.idle_timeout_s)  # a stalled read fails, never hangs
        return client

    def _session(self) -> paramiko.Channel:
        """Open a session channel whose stdout is buffered without extra copies."""
        started = time.monotonic()
        channel = self.transport.open_session(window_size=self.window())
        with self._measured_lock:
            self._observe_rtt(time.monotonic() - started)
            actions, self._when_measured = self._when_measured, []
        for action in actions:
            action()
        install_chunk_pipe(channel)  # before any data can arrive: nothing runs on it yet
        return channel

    def start_script(self, script: str) -> paramiko.Channel:
        """Given a sh script, start it on a new channel and return the channel, its stdin
        and output left to the caller. Raise paramiko.SSHException, OSError or EOFError."""
        channel = self._session()
        channel.exec_command(sh_command(script))
        return channel

    def run(
        self,
        command: str,
        stdin: bytes | None = None,
        idle_timeout: float | None = None,
        max_output: int = MAX_EXEC_OUTPUT,
        cancel: threading.Event | None = None,
    ) -> ScriptResult:
        """Run `command` remotely, feed it `stdin`, return its status and output.

        Raise RemoteError if the channel fails, the output exceeds `max_output` bytes, no
        byte arrives for `idle_timeout` seconds (a stalled peer), or `cancel` is set (the
        channel is closed: the remote command loses its output and ends).
        """
        try:
            channel = self._session()
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise RemoteError(f"cannot run remote command: {exc}") from exc
        feeder = threading.Thread(target=_feed, args=(channel, stdin or b""), daemon=True)
        feeder.start()
        try:
            out, err = _drain(channel, idle_timeout or self.idle_timeout_s, max_output, cancel)
            status = channel.recv_exit_status()
        finally:
            close_quietly(channel)
            feeder.join(timeout=1)
        if START_MARKER not in out[: MAX_PREAMBLE + len(START_MARKER)]:
            said = printable_excerpt(out + err)
            raise RemoteError(
                "the remote shell did not run the command (no start marker)"
                + (f"; it printed: {said}" if said else "")
            )
        return ScriptResult(status, after_marker(out), err)

    def run_script(
        self, script: str, idle_timeout: float | None = None, max_output: int = MAX_EXEC_OUTPUT
    ) -> ScriptResult:
        """Run a sh `script` that reads no input and may safely run twice; return as `run`
        does. Run it on the shell `shells` started ahead of time for this script when one
        waits (a shell that died waiting, or was killed while running it, means a fresh
        run), and start the next one: a script run on every poll (the listing) pays the
        login shell's start between polls instead (see `shells.py`).
        """
        result = None
        channel = self.shells.release(script)
        if channel is not None:
            result = self._finish_released(channel, idle_timeout or self.idle_timeout_s, max_output)
        if result is None:
            result = self.run(sh_command(script), idle_timeout=idle_timeout, max_output=max_output)
        self.shells.prepare(script)
        return result

    def open_script(self, script: str, key: Hashable | None = None) -> paramiko.Channel:
        """Return a channel running sh `script`, its stdin and output left to the caller:
        the shell prepared under `key` (default: the script) in `shells`, released, or else
        a new one. Raise paramiko.SSHException, OSError or EOFError."""
        channel = self.shells.release(script if key is None else key)
        return channel if channel is not None else self.start_script(script)

    def _finish_released(
        self, channel: paramiko.Channel, idle_timeout: float, max_output: int
    ) -> ScriptResult | None:
        """Given a released prepared shell, read its script's result and return it, or None
        if it never ran (its shell or channel went away while waiting, or it was killed:
        the caller runs the script afresh)."""
        try:
            channel.shutdown_write()
            out, err = _drain(channel, idle_timeout, max_output)
            status = channel.recv_exit_status()
        except OutputTooLarge:
            raise
        except (paramiko.SSHException, OSError, EOFError, RemoteError):
            if not self.alive:
                raise RemoteError("connection lost while a remote command ran") from None
            return None
        finally:
            close_quietly(channel)
        if status in (NOT_RELEASED, -1) or START_MARKER not in out:
            return None  # never ran, or its shell was killed (no exit status): run it afresh
        return ScriptResult(status, after_marker(out), err)

    def close(self) -> None:
        self.transport.close()


def printable_excerpt(data: bytes, limit: int = 200) -> str:
    """Given bytes a remote printed, return its first `limit` characters on one line, every
    control character shown as `?` (never markup, never a terminal escape)."""
    text = " ".join(data[: limit * 4].decode("utf-8", "replace").split())
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def _feed(channel: paramiko.Channel, data: bytes) -> None:
    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the remote closed its stdin early; its exit status tells the rest


def _drain(
    channel: paramiko.Channel,
    idle_timeout: float,
    max_output: int = MAX_EXEC_OUTPUT,
    cancel: threading.Event | None = None,
) -> tuple[bytes, bytes]:
    out = bytearray()
    err = bytearray()
    last = time.monotonic()
    while True:
        if cancel is not None and cancel.is_set():
            raise RemoteError("cancelled")
        got = False
        while channel.recv_ready():
            out += channel.recv(CHUNK)
            got = True
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(CHUNK)
            got = True
        if len(out) + len(err) > max_output:
            raise OutputTooLarge(f"remote command output exceeds {max_output} bytes")
        if got:
            last = time.monotonic()
        elif channel.eof_received or channel.closed:
            # Done once the remote closed its output (sshd sends EOF after the last byte of
            # stdout and stderr) and everything before that was read. The exit status is no
            # such sign: sshd may send it while output is still on its way.
            if channel.recv_ready() or channel.recv_stderr_ready():
                continue
            if not channel.eof_received and not channel.exit_status_ready():
                raise RemoteError("connection lost while a remote command ran")
            return bytes(out), bytes(err)
        elif not channel.get_transport().is_active():
            raise RemoteError("connection lost while a remote command ran")
        elif time.monotonic() - last > idle_timeout:
            raise RemoteError(f"remote command stalled: no output for {idle_timeout:.0f}s")
        else:
            select.select([channel], [], [], 0.5)


def connect(
    host: str,
    ssh: SshConfig,
    on_transport: Callable[[paramiko.Transport], None] | None = None,
    check_key: Callable[[paramiko.PKey], None] | None = None,
) -> Connection:
    """Given a host and its ssh settings, return an authenticated Connection.

    `on_transport` is handed the transport before the handshake, so another thread can
    abort a connection attempt (shutdown) by closing it. `check_key`, when given, judges
    the server's host key instead of known_hosts (`forge-syncctl add`, which asks a person):
    it raises to refuse it, before any authentication. Raise ConnectError (socket, DNS,
    handshake), HostKeyError or AuthError.
    """
    sock = _open_socket(host, ssh.port, ssh.connect_timeout_s)
    transport = paramiko.Transport(sock)
    if on_transport is not None:
        on_transport(transport)
    try:
        known_types = known_key_types(host, ssh.port, ssh.known_hosts)
        _negotiate(transport, ssh.connect_timeout_s, known_types)
        key = transport.get_remote_server_key()
        if check_key is not None:
            check_key(key)
        else:
            check_host_key(key, host, ssh.port, ssh.known_hosts, ssh.host_key_policy)
        _authenticate(transport, ssh.user, ssh.identity_file)
    except BaseException:
        transport.close()
        raise
    transport.set_keepalive(max(1, round(ssh.keepalive_s)))
    # paramiko's transport thread wakes every 0.1 s on an idle socket (to see whether it was
    # closed and when a keepalive is due): 50 idle connections cost ~3% of a core. Once a
    # second is enough for whole-second keepalives; data is read as soon as it arrives.
    transport.sock.settimeout(IDLE_POLL_S)
    # Opening a channel on a stalled connection must fail too (paramiko waits an hour).
    transport.channel_timeout = 4 * ssh.keepalive_s
    # Four missed keepalives without a byte: the peer is gone (ssh's ServerAliveCountMax).
    return Connection(transport, host, ssh.port, 4 * ssh.keepalive_s)


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror as exc:
        raise ConnectError(f"cannot resolve {host}: {exc.strerror}") from exc
    except TimeoutError as exc:
        raise ConnectError(f"{host}:{port}: connection timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise ConnectError(f"{host}:{port}: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _negotiate(transport: paramiko.Transport, timeout: float, known_types: list[str]) -> None:
    """Given a fresh transport, the connect timeout and the host key types known for the
    host (asked for first), run the key exchange. Raise ConnectError."""
    options = transport.get_security_options()
    ours = [c for c in PREFERRED_CIPHERS if c in options.ciphers]
    options.ciphers = (*ours, *(c for c in options.ciphers if c not in ours))
    options.key_types = prefer_known_types(options.key_types, known_types)
    set_rekey_limits(transport, NO_CLIENT_REKEY)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        transport.get_remote_server_key()  # raises unless the key exchange really finished
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectError(f"SSH handshake failed: {exc or type(exc).__name__}") from exc


def _authenticate(transport: paramiko.Transport, user: str, identity_file: Path) -> None:
    try:
        key = paramiko.PKey.from_path(identity_file)
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise AuthError(f"cannot load identity file {identity_file}: {exc}") from exc
    try:
        transport.auth_publickey(user, key)
    except paramiko.AuthenticationException as exc:
        raise AuthError(f"the server refused key {identity_file} for user {user!r}") from exc
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectError(f"connection lost during authentication: {exc}") from exc
    if not transport.is_authenticated():
        raise AuthError(f"the server refused key {identity_file} for user {user!r}")
