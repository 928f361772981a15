"""A TCP proxy on 127.0.0.1 that can freeze: it stops forwarding without closing anything,
like a NAT box or a rented host that silently stops answering."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Callable


class FreezingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen = threading.Event()
        self.closing = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        def upstream() -> socket.socket:
            return socket.create_connection(("127.0.0.1", self.target_port))

        def serve(client: socket.socket, server: socket.socket) -> None:
            self.sockets += [client, server]
            self._pump(client, server)

        accept_each(self.listener, self.closing, upstream, serve)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while not self.closing.is_set():
            if self.frozen.is_set():
                self.closing.wait(0.1)  # hold the connections open, forward nothing
                continue
            for key, _ in selector.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self.closing.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


def accept_each(
    listener: socket.socket,
    closing: threading.Event,
    upstream: Callable[[], socket.socket],
    serve: Callable[[socket.socket, socket.socket], None],
) -> None:
    """Until `closing` (or the listener is closed), accept each client, connect it a socket
    of its own to the proxied server (`upstream`) and `serve` the pair on a thread."""
    while not closing.is_set():
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(client, upstream()), daemon=True).start()
