"""A minimal Docker Engine API client (no dependency), over the engine's unix socket or,
for `docker.host: ssh://[user@]host[:port]`, over `ssh ... docker system dial-stdio`
(`sshdial.py`: one OpenSSH process per connection, as Docker's CLI does).

Exec: `POST /containers/C/exec`, then `POST /exec/ID/start` upgraded to a raw stream
(`Connection: Upgrade`, `Upgrade: tcp`): stdin goes up the socket (a half-close ends it),
stdout and stderr come back in frames of an 8-byte header `[stream, 0, 0, 0, size as a
big-endian uint32]`. Archive: `GET /containers/C/archive?path=P` (a tar of P, made by the
engine: no tool in the container needed) and `HEAD` (its stat only). The engine answers
`bench/docker_exec.py` measured faster than the `docker` CLI (README, Transports: Docker).

A process started by exec is not ended by closing its stream: each exec carries a token in
its environment and `kill_exec` kills every process of the container that holds it.
"""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from forge_syncd.config.dockerhost import SshEngine, parse_docker_host
from forge_syncd.config.model import SshConfig
from forge_syncd.remote.errors import ConnectError, RemoteError
from forge_syncd.transports.docker import sshdial

HEADER = struct.Struct(">BxxxL")
MAX_FRAME = 16 * 1024 * 1024  # a larger frame header is not the engine's
MAX_ERROR = 500
TOKEN_VAR = "FORGE_SYNCD_EXEC"  # noqa: S105 (a marker, not a secret)


class EngineDown(ConnectError):
    """The Docker engine does not answer on its socket."""


class ContainerUnreachable(ConnectError):
    """The engine answers, but the container is missing, stopped or paused."""


Opener = Callable[[float], socket.socket]


def opener(host: str, ssh: SshConfig | None = None) -> Opener:
    """Given `docker.host` and the daemon's SSH settings (its key and known_hosts: for
    ssh:// hosts), return what opens one connection to the engine (given a timeout).
    Raise RemoteError for a host that is neither unix:///path nor ssh://."""
    try:
        parsed = parse_docker_host(host)
    except ValueError as exc:
        raise RemoteError(f"docker.host: {exc}") from None
    if isinstance(parsed, SshEngine):
        settings = ssh or SshConfig()
        return lambda timeout: sshdial.dial(parsed, settings, timeout)

    def unix(timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(parsed)
        except OSError:
            sock.close()
            raise
        return sock

    return unix


class _EngineConnection(http.client.HTTPConnection):
    def __init__(self, open_socket: Opener, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self.open_socket = open_socket
        self.seconds = timeout
        self.opened: socket.socket | None = None  # kept after a failure: what ssh said

    def connect(self) -> None:
        self.sock = self.opened = self.open_socket(self.seconds)


class _ArchiveConnection(_EngineConnection):
    """An archive request in HTTP/1.0: the engine sends the tar as it is, to the end of the
    connection, instead of chunks of at most 32 KiB, each framed and unframed (for 300 MB
    this process's CPU fell from 0.15-0.24 s to 0.05-0.11 s, dockerd's own process's by about
    a third). That the tar came whole is the tar's to say, as in a chunked response: a member
    cut short is refused (`TarReader`), one that never came is not delivered."""

    _http_vsn = 10
    _http_vsn_str = "HTTP/1.0"


def _ssh_said(sock: socket.socket | None) -> str:
    """What the dial of `sock` printed, as a clause of an error ("" for a unix socket)."""
    said = sock.said() if isinstance(sock, sshdial.DialedSocket) else ""
    return f" (ssh: {said})" if said else ""


def _said(body: bytes) -> str:
    """The engine's error message of a JSON error body, bounded and printable."""
    try:
        text = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        text = body.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text.strip())
    return text[:MAX_ERROR] or "no message"


def engine_message(body: bytes) -> str:
    """The message of an engine's JSON error body, bounded and printable."""
    return _said(body)


@dataclass(frozen=True)
class PathStat:
    """What the archive endpoint says of a path: size, mtime (whole seconds), type bits."""

    size: int
    mtime_s: int
    mode: int


class Engine:
    """One engine (`host`), one container (`container`), exec-ing as `user`."""

    def __init__(
        self, host: str, container: str, user: str, timeout_s: float, ssh: SshConfig | None = None
    ) -> None:
        self.host = host
        self.open_socket = opener(host, ssh)
        self.container = container
        self.user = user
        self.timeout_s = timeout_s
        self._quoted = quote(container, safe="")

    def _connection(self, timeout: float | None = None) -> _EngineConnection:
        return _EngineConnection(self.open_socket, self.timeout_s if timeout is None else timeout)

    def _down(self, exc: OSError, sock: socket.socket | None = None) -> EngineDown:
        said = _ssh_said(sock)
        return EngineDown(f"the Docker engine at {self.host} does not answer: {exc}{said}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """Send one request (a JSON body if given); return (status, body). Raise EngineDown."""
        conn = self._connection()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            return response.status, response.read(1024 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            raise self._down(OSError(str(exc) or type(exc).__name__), conn.opened) from exc
        finally:
            conn.close()

    def _unreachable(self, status: int, body: bytes) -> RemoteError:
        said = _said(body)
        if status in (404, 409):
            return ContainerUnreachable(f"container {self.container}: {said}")
        return RemoteError(f"Docker engine answered {status}: {said}")

    def exec(self, argv: list[str], stdin: bool) -> ExecStream:
        """Start `argv` in the container; return its stream. Raise ContainerUnreachable
        (missing, stopped), EngineDown, RemoteError."""
        token = secrets.token_hex(12)
        config = {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "Cmd": argv,
            "User": self.user,
            "Env": ["LC_ALL=C", f"{TOKEN_VAR}={token}"],
        }
        status, body = self.request("POST", f"/containers/{self._quoted}/exec", config)
        if status != 201:
            raise self._unreachable(status, body)
        try:
            exec_id = str(json.loads(body)["Id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError("the Docker engine's exec answer is not understood") from exc
        if not exec_id.isalnum():
            raise RemoteError("the Docker engine's exec id is not understood")
        payload = b'{"Detach": false, "Tty": false}'
        head = (
            f"POST /exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
            "Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        try:
            sock = self.open_socket(self.timeout_s)
        except OSError as exc:
            raise self._down(exc) from exc
        try:
            sock.sendall(head + payload)
            rest = _response_head(sock)
        except OSError as exc:
            down = self._down(exc, sock)
            sock.close()
            raise down from exc
        except RemoteError as exc:
            said = _ssh_said(sock)
            sock.close()
            if said:
                raise EngineDown(f"{exc}{said}") from None
            raise
        return ExecStream(self, exec_id, token, sock, rest)

    def exit_code(self, exec_id: str) -> int | None:
        """The exit code of a finished exec (None while it runs or if unknown)."""
        status, body = self.request("GET", f"/exec/{exec_id}/json")
        if status != 200:
            return None
        try:
            info = json.loads(body)
            code = info.get("ExitCode")
            return None if info.get("Running") or not isinstance(code, int) else code
        except (ValueError, AttributeError):
            return None

    def kill_exec(self, token: str) -> None:
        """Kill every process of the container whose environment holds `token` (what an
        exec started, its children too). Best effort: errors are ignored."""
        script = (
            "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/environ 2>/dev/null)\" in"
            f' *"{TOKEN_VAR}={token} "*) kill -9 "${{p#/proc/}}" 2>/dev/null;; esac; done'
        )
        try:
            stream = self.exec(["sh", "-c", script], stdin=False)
        except RemoteError:
            return
        try:
            while stream.read():
                pass
        except (OSError, RemoteError):
            pass
        finally:
            stream.sock.close()

    def _missing(self, said: str, head: bool) -> bool:
        """Whether a 404 of the archive endpoint means the container is missing (a HEAD
        has no message: the container is looked up)."""
        if not head:
            return _missing_message(said)
        return self.request("GET", f"/containers/{self._quoted}/json")[0] == 404

    def archive(self, path: bytes, head: bool = False) -> tuple[PathStat, http.client.HTTPResponse]:
        """Return the stat of `path` in the container and the open response of its tar (or of
        a HEAD). Raise FileNotFoundError when the path is not there, ContainerUnreachable,
        EngineDown."""
        conn = _ArchiveConnection(self.open_socket, self.timeout_s)
        url = f"/containers/{self._quoted}/archive?path={quote(path, safe='')}"
        try:
            conn.request("HEAD" if head else "GET", url)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            down = self._down(OSError(str(exc) or type(exc).__name__), conn.opened)
            conn.close()
            raise down from exc
        if response.status != 200:
            body = b"" if head else response.read(64 * 1024)
            conn.close()
            said = _said(body)
            if response.status == 404 and not self._missing(said, head):
                raise FileNotFoundError(said)
            raise self._unreachable(response.status, body)
        return _path_stat(response.getheader("X-Docker-Container-Path-Stat", "")), response


def _missing_message(said: str) -> bool:
    return said.startswith("No such container")


def _path_stat(header: str) -> PathStat:
    """Parse the engine's base64 JSON stat header (`mtime` in RFC 3339)."""
    try:
        info = json.loads(base64.b64decode(header[:4096]))
        stamp = str(info["mtime"])
        size, mode = int(info["size"]), int(info["mode"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("the engine's path stat is not understood") from exc
    from datetime import datetime

    whole, _, rest = stamp.partition(".")
    zone = rest.lstrip("0123456789") if rest else stamp[19:]
    zone = "+00:00" if zone in ("Z", "") else zone
    try:
        moment = datetime.fromisoformat(whole[:19] + zone)
    except ValueError as exc:
        raise RemoteError("the engine's path stat has no readable mtime") from exc
    return PathStat(size, int(moment.timestamp()), mode)


def _response_head(sock: socket.socket) -> bytes:
    """Read the HTTP head of an exec start; return the bytes after it. Raise RemoteError
    unless the engine switched to the raw stream (101, or 200 from older engines)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk or len(received) > 65536:
            raise RemoteError("the Docker engine did not start the exec stream")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if status_line.split()[1:2] not in ([b"101"], [b"200"]):
        raise RemoteError(f"exec start refused: {status_line[:200].decode('ascii', 'replace')}")
    return rest


class ExecStream:
    """A started exec: stdin up, demultiplexed stdout back (stderr kept, bounded)."""

    def __init__(self, engine: Engine, exec_id: str, token: str, sock: socket.socket, rest: bytes):
        self.engine = engine
        self.exec_id = exec_id
        self.token = token
        self.sock = sock
        self.stderr = bytearray()
        self._buffer = bytearray(rest)
        self._ended = False

    def send(self, data: bytes) -> None:
        """Write `data` to the process's stdin."""
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """End the process's stdin (half-close: its output keeps coming)."""
        self.sock.shutdown(socket.SHUT_WR)

    def read(self) -> bytes:
        """Return the next piece of stdout, b"" at its end. Raise OSError (a socket timeout
        included) or RemoteError when the stream breaks inside a frame."""
        while not self._ended:
            piece = self._frame()
            if piece is not None:
                return piece
            chunk = self.sock.recv(1024 * 1024)
            if not chunk:
                self._ended = True
                if self._buffer:
                    raise RemoteError("the exec stream was cut inside a frame")
                break
            self._buffer += chunk
        return b""

    def _frame(self) -> bytes | None:
        """The stdout payload of the next whole frame in the buffer (stderr kept aside)."""
        while len(self._buffer) >= HEADER.size:
            kind, size = HEADER.unpack_from(self._buffer)
            if kind not in (0, 1, 2) or size > MAX_FRAME:
                raise RemoteError("the exec stream is not framed as the engine frames it")
            end = HEADER.size + size
            if len(self._buffer) < end:
                return None
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            if kind == 1 and payload:
                return payload
            if kind == 2 and len(self.stderr) < 64 * 1024:
                self.stderr += payload[: 64 * 1024 - len(self.stderr)]
        return None

    def buffered(self) -> bool:
        """Whether a whole frame may be waiting in the buffer (read it without waiting)."""
        return len(self._buffer) >= HEADER.size

    def exit_code(self) -> int | None:
        return self.engine.exit_code(self.exec_id)

    def close(self, kill: bool = True) -> None:
        """Close the stream; with `kill`, also kill what the exec left running."""
        try:
            self.sock.close()
        finally:
            if kill:
                self.engine.kill_exec(self.token)
