"""The control socket's limits, in process over real Unix sockets: text that is not Unicode
is refused by the protocol; a silent client is dropped after the idle limit (a request,
not a blank line, keeps it); a client with no slot left is answered `busy` and the burst
logged once; the client tells a busy or slow daemon from a lost one. The same against
the installed daemon is in tests/e2e/test_control.py."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge_syncd.control.client import ControlClient, DaemonBusy, DaemonUnreachable
from forge_syncd.control.protocol import (
    BAD_PARAMS,
    BAD_REQUEST,
    Request,
    RequestError,
    error_line,
    ok_line,
    parse_request,
)
from forge_syncd.control.server import ControlServer
from tests.support.daemon import read_log, wait_until


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (a Unix socket path holds at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="fsctl-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    ("line", "code", "words"),
    [
        (rb'{"id": 1, "method": "find", "params": {"prompt": "a\ud800"}}', BAD_PARAMS, "'prompt'"),
        (
            rb'{"id": 1, "method": "sync", "params": {"containers": ["\udfff"]}}',
            BAD_PARAMS,
            "'containers'",
        ),
        (rb'{"id": 1, "method": "find", "params": {"\ud800": 1}}', BAD_PARAMS, "'\\ud800'"),
        (rb'{"id": "\ud800", "method": "hello"}', BAD_REQUEST, "id is not valid Unicode"),
        (b"[" * 200_000, BAD_REQUEST, "nested too deeply"),
    ],
)
def test_text_that_is_not_unicode_is_refused(line: bytes, code: str, words: str) -> None:
    """JSON's `\\ud800` escape decodes to a lone surrogate, which no catalog, file name or
    response line can hold: in params it is `bad_params` naming the param, in the id
    `bad_request`; a line nested past Python's recursion limit is `bad_request` too."""
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert caught.value.code == code
    assert words in caught.value.message


def test_a_response_holding_a_lone_surrogate_is_still_one_json_line() -> None:
    """A value with a lone surrogate (a remote name that is not UTF-8) goes out as its JSON
    escape instead of failing the line."""
    line = ok_line(3, {"path": "day/\udc80.png", "prompt": "狐 \U0001f98a"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["result"] == {"path": "day/\udc80.png", "prompt": "狐 \U0001f98a"}


class Server:
    """A ControlServer on a real socket answering `hello`, with small limits."""

    def __init__(self, folder: Path, max_clients: int, idle_limit_s: float) -> None:
        self.path = folder / "control.sock"
        self.control = ControlServer(
            self.path, self.answer, idle_limit_s=idle_limit_s, max_clients=max_clients
        ).start()

    def answer(self, request: Request) -> Any:
        return {"method": request.method}

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(30)
        sock.connect(str(self.path))
        return sock


def closed_by_daemon(sock: socket.socket) -> bytes:
    """Read until the server closes `sock`; return what it sent."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_full_slots_answer_busy_log_once_and_free_up_after_the_idle_limit(
    short_dir: Path, tmp_path: Path
) -> None:
    """Two slots held by silent clients: every further client is answered `busy` (and
    closed), and `control_clients_full` is logged once for the burst; the silent clients
    are dropped after the idle limit and the next client is served."""
    server = Server(short_dir, max_clients=2, idle_limit_s=1.0)
    try:
        silent = [server.connect(), server.connect()]
        for _ in range(3):
            with server.connect() as extra:
                answer = json.loads(closed_by_daemon(extra))
            assert answer["error"]["code"] == "busy" and answer["id"] is None
            assert "all 2 control connections are in use" in answer["error"]["message"]
        for sock in silent:
            assert closed_by_daemon(sock) == b""
            sock.close()
        wait_until(lambda: "control_clients_available" in events(tmp_path), what="the burst's end")
        with ControlClient(server.path) as client:
            assert client.call("hello") == {"method": "hello"}
    finally:
        server.control.close()
    assert events(tmp_path).count("control_clients_full") == 1


def events(tmp_path: Path) -> list[str]:
    return [r["event"] for r in read_log(tmp_path / "log.jsonl")]


def has_data(sock: socket.socket) -> bool:
    """Return whether the server sent something (or closed) on `sock`, without waiting."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)  # a socket with a timeout would wait for data even with MSG_DONTWAIT
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(timeout)
    return True


def test_blank_lines_do_not_keep_a_client_but_requests_do(short_dir: Path) -> None:
    """Idle means no request: a client sending a blank line every 0.1 s is dropped after the
    idle limit, while one sending a request every 0.3 s (each answered) is kept."""
    server = Server(short_dir, max_clients=4, idle_limit_s=1.0)
    try:
        with server.connect() as asking, server.connect() as blank:
            reader = asking.makefile("rb")
            asked = 0
            while not has_data(blank):
                assert asked < 100, "the blank-line client was never dropped"
                blank.sendall(b"\n")
                asking.sendall(b'{"id": %d, "method": "hello"}\n' % asked)
                assert json.loads(reader.readline())["id"] == asked
                asked += 1
                time.sleep(0.1)
            assert closed_by_daemon(blank) == b""
            asking.sendall(b'{"id": -1, "method": "hello"}\n')
            assert json.loads(reader.readline())["id"] == -1
    finally:
        server.control.close()


def test_a_busy_answer_is_read_even_when_the_request_cannot_be_sent(short_dir: Path) -> None:
    """The daemon answers `busy` and closes without reading: the client's send then fails
    (EPIPE), yet it reads the answer and raises DaemonBusy with it, not "lost"."""
    path = short_dir / "busy.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    try:
        client = ControlClient(path)
        conn, _ = listener.accept()
        conn.sendall(error_line(None, "busy", "forge-syncd is busy: all 256 in use; try again"))
        conn.close()
        with pytest.raises(DaemonBusy, match=r"^forge-syncd is busy: all 256 in use; try again$"):
            client.call("hello")
        client.close()
    finally:
        listener.close()


def test_a_daemon_that_takes_the_connection_but_never_answers_is_busy_not_lost(
    short_dir: Path,
) -> None:
    """A socket that accepts and never answers: DaemonBusy naming the socket and the wait
    (forge-syncctl exits 3 with it), where a connection closed under the request is
    DaemonUnreachable ("lost")."""
    path = short_dir / "mute.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(4)
    try:
        with ControlClient(path) as client:
            with pytest.raises(DaemonBusy) as caught:
                client.call("hello", timeout=0.5)
            assert str(path) in str(caught.value) and "did not answer within" in str(caught.value)
        listener.accept()[0].close()  # that first client
        with ControlClient(path) as client:
            listener.accept()[0].close()
            with pytest.raises(DaemonUnreachable) as lost:
                client.call("hello", timeout=5)
            assert not isinstance(lost.value, DaemonBusy)
    finally:
        listener.close()
