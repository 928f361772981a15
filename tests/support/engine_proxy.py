"""A unix-socket proxy in front of a Docker engine that cuts the engine's archive answers:
each request is forwarded as it is, and the answer to an archive GET is closed after
`cut_at` bytes (its HTTP head included), as a broken connection would end it. `captured`
keeps the last archive answer forwarded whole (`cut_at` None), to find where to cut."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from tests.support.proxy import accept_each


class CuttingEngineProxy:
    def __init__(self, engine_socket: Path, path: Path) -> None:
        self.engine_socket = engine_socket
        self.path = path
        self.cut_at: int | None = None
        self.captured = b""
        self.cuts = 0  # archive answers cut
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(16)
        self.closing = threading.Event()
        args = (self.listener, self.closing, self._upstream, self._serve)
        threading.Thread(target=accept_each, args=args, daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def _upstream(self) -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(str(self.engine_socket))
        return upstream

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        first = client.recv(65536)
        archive = first.startswith(b"GET ") and b"/archive?" in first.split(b"\r\n", 1)[0]
        upstream.sendall(first)
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        answer = bytearray()
        cut = self.cut_at if archive else None
        try:
            while chunk := upstream.recv(65536):
                if cut is not None and len(answer) + len(chunk) >= cut:
                    client.sendall(chunk[: cut - len(answer)])
                    self.cuts += 1
                    return
                answer += chunk if archive else b""
                client.sendall(chunk)
            if archive:
                self.captured = bytes(answer)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self.closing.set()
        self.listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)
