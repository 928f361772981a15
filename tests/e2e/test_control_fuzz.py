"""Fuzzing the control protocol with every method, state-changing and streaming ones
included, against a real daemon whose only container cannot be reached (so `sync`,
`cleanup`, `drain`, `pause` and `watch` are safe to send at random): each line gets one
response of the protocol's shape, with the request's id, and the daemon goes on answering.

(tests/e2e/test_fuzz.py sends raw bytes with many newlines per connection; here each line
is judged on its own against what the protocol says it must get.)
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forge_syncd.control.protocol import ERROR_CODES, INTERNAL, METHODS
from tests.support.cli import write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, free_port

CONTAINER = "gone"  # the daemon's only container: its port is closed
CODES = ERROR_CODES - {INTERNAL}  # every code the protocol defines but `internal`
# What an ok result holds, per method (SPEC "Control protocol").
RESULT_KEYS: dict[str, set[str]] = {
    "hello": {"protocol", "version"},
    "status": {"daemon", "containers", "sinks"},
    "pause": {"container", "state"},
    "resume": {"container", "state"},
    "cancel": {"container", "cancelled"},
    "history": {"runs"},
    "watch": {"watching"},
    "drain": {"container", "safe", "unsafe"},
    "add": {"step", "container", "host", "port", "user", "known_hosts"},
    "remove": {"container", "file", "remote_only", "reload"},
}


@dataclass
class Daemon:
    socket: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def daemon(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with one container, `gone`, on a closed port (interval 1 h, live mode off)."""
    work = tmp_path_factory.mktemp("control-fuzz")
    config = write_config(work, sshd, work / "remote", interval="1h", watch="false")
    config.write_text(
        config.read_text()
        .replace("name: forge-a", f"name: {CONTAINER}")
        .replace(f"port: {sshd.port}", f"port: {free_port()}")
    )
    process = start_daemon(config)
    running = Daemon(work / "run" / "control.sock", process)
    wait_until(running.socket.exists, what="the control socket")
    yield running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


NAMES = st.sampled_from([CONTAINER, "nope", "", "../x", "gone\n"])
PARAM_VALUES = st.one_of(
    NAMES,
    st.booleans(),
    st.none(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.one_of(NAMES, st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
PARAMS = st.dictionaries(
    st.sampled_from(
        ["container", "containers", "wait", "dry_run", "purge", "limit", "prompt", "since", "x"]
    ),
    PARAM_VALUES,
    max_size=4,
)
C = CONTAINER
GOOD_PARAMS: dict[str, list[dict[str, Any]]] = {  # what each method is normally sent
    "sync": [{}, {"containers": [C]}, {"containers": [C], "wait": True}],
    "cleanup": [{"containers": [C], "dry_run": True, "wait": True}, {"containers": [C]}],
    "pause": [{"container": C}],
    "resume": [{"container": C}],
    "cancel": [{"container": C}],
    "drain": [{"container": C}, {"container": C, "purge": True}],
    "history": [{}, {"container": C, "limit": 5}],
    "watch": [{}, {"containers": [C]}],
    "find": [{"prompt": "duck"}, {"limit": 3}],
    # port 1 is closed: `add` fails (`failed`) before anything is written
    "add": [{"name": "fz-a", "target": "ssh://127.0.0.1:1"}, {"name": C, "target": "docker://x"}],
    "remove": [{"name": C}, {"name": "nope", "force": True}],
}
IDS = st.one_of(st.integers(-(2**63), 2**63), st.text(max_size=8), st.none())
BAD_IDS = st.one_of(st.booleans(), st.floats(), st.lists(st.integers(), max_size=2))
OTHER = st.sampled_from(["nope", "", "STATUS", "sync ", "hello\n"])


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request object: mostly well formed (a real method with the params it is normally
    sent and a valid id), sometimes with a wrong id, method or params, a missing field or an
    extra one."""
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["id"] = draw(IDS) if draw(st.integers(0, 7)) else draw(BAD_IDS)
    method = draw(st.sampled_from(sorted(METHODS)))
    if draw(st.integers(0, 15)):
        message["method"] = method if draw(st.integers(0, 5)) else draw(st.one_of(OTHER, IDS))
    shape = draw(st.integers(0, 9))
    if shape < 6:
        message["params"] = draw(st.sampled_from(GOOD_PARAMS.get(method, [{}])))
    elif shape < 9:
        message["params"] = draw(PARAMS)
    else:
        message["params"] = draw(st.one_of(st.lists(st.integers(), max_size=2), st.text()))
    if not draw(st.integers(0, 9)):
        message["extra"] = draw(PARAM_VALUES)
    return message


LINES = st.one_of(
    requests().map(lambda message: json.dumps(message).encode()),
    requests().map(lambda message: json.dumps(message).encode()),
    requests().map(lambda message: json.dumps(message).encode()),
    st.binary(min_size=1, max_size=200)
    .map(lambda data: data.replace(b"\n", b" "))
    .filter(lambda data: bool(data.strip())),
    st.sampled_from([b"[]", b"null", b'"status"', b"{", b'{"id": 1, "method": "sta', b"\xff"]),
)


SENTINEL = b'{"id": "after", "method": "status"}'


def ask(path: Path, line: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Send one line, then a `status` request, on a new connection; return the line's
    response and the status response that must come next (None after a `watch` that was
    accepted: its connection streams events from then on)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(120)
        sock.connect(str(path))
        sock.sendall(line + b"\n" + SENTINEL + b"\n")
        reader = sock.makefile("rb")
        answer = reader.readline()
        assert answer.endswith(b"\n"), answer
        response: dict[str, Any] = json.loads(answer)
        if response.get("result") == {"watching": True}:
            return response, None
        after: dict[str, Any] = json.loads(reader.readline())
        return response, after


def expected_id(line: bytes) -> Any:
    """The id the response must carry: the request's, when it is a JSON object with an id
    the protocol accepts (a string or a number that is not a boolean); else null."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    found = message.get("id")
    if isinstance(found, str) or (isinstance(found, int) and not isinstance(found, bool)):
        return found
    return None


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=LINES)
def test_every_line_gets_one_response_of_the_protocols_shape(daemon: Daemon, line: bytes) -> None:
    """Any line, `sync`, `pause`, `watch`, `drain` and `cleanup` included: exactly one
    response line (a `watch` that is accepted then streams), `{"id", "ok", "result"}` when
    ok, `{"id", "ok", "error": {"code", "message"}}` when not, the code one of the
    protocol's (never `internal`: no request makes the daemon fail), the id the request's
    when it had a valid one, an unknown method `unknown_method`, params that are not an
    object `bad_params`, an ok result with the keys its method returns; afterwards the
    daemon is alive and `status` still lists its container."""
    response, after = ask(daemon.socket, line)
    assert isinstance(response["ok"], bool), response
    assert response["id"] == expected_id(line), (line, response)
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    method = message.get("method") if isinstance(message, dict) else None
    code = "ok" if response["ok"] else response.get("error", {}).get("code")
    event(f"{method if method in METHODS else 'other'}: {code}")
    if response["ok"]:
        assert set(response) == {"id", "ok", "result"}, response
        assert isinstance(message, dict) and method in METHODS, (line, response)
        assert isinstance(response["result"], dict), response
        assert RESULT_KEYS.get(method, set()) <= set(response["result"]), (method, response)
    else:
        assert set(response) == {"id", "ok", "error"}, response
        assert set(response["error"]) == {"code", "message"}, response
        assert response["error"]["code"] in CODES, (line, response)
        assert isinstance(response["error"]["message"], str) and response["error"]["message"]
        valid_id = isinstance(message, dict) and expected_id(line) == message.get("id")
        if valid_id and isinstance(method, str) and method not in METHODS:
            assert response["error"]["code"] == "unknown_method", response
        params = message.get("params", {}) if isinstance(message, dict) else {}
        if valid_id and method in METHODS and not isinstance(params, dict | None):
            assert response["error"]["code"] == "bad_params", response
    if after is None:  # a watch: ask on a new connection
        assert method == "watch" and response["ok"], response
        after, _ = ask(daemon.socket, b'{"id": "after", "method": "hello"}')
        after, _ = ask(daemon.socket, SENTINEL)
    assert after["ok"] and after["id"] == "after", after  # the line got one response only
    assert [c["name"] for c in after["result"]["containers"]] == [CONTAINER]
    assert daemon.process.poll() is None


def test_the_fuzz_reaches_every_method_with_an_ok_answer(daemon: Daemon) -> None:
    """Each method the fuzz draws works on this daemon when asked properly: `sync` and
    `cleanup` (queued and waited), `pause`/`resume`, `cancel`, `drain` (not safe: the
    container cannot be reached), `watch` (accepted), `history`, `reload`, `status`,
    `hello`; `find` with no catalog is `not_found`. So the random lines above can reach
    them, not only their refusals."""
    calls = [
        ("hello", {}),
        ("status", {}),
        ("sync", {"containers": [CONTAINER]}),
        ("sync", {"containers": [CONTAINER], "wait": True}),
        ("cleanup", {"containers": [CONTAINER], "dry_run": True, "wait": True}),
        ("pause", {"container": CONTAINER}),
        ("resume", {"container": CONTAINER}),
        ("cancel", {"container": CONTAINER}),
        ("drain", {"container": CONTAINER, "purge": True}),
        ("watch", {}),
        ("history", {"container": CONTAINER}),
        ("reload", {}),
    ]
    for number, (method, params) in enumerate(calls):
        line = json.dumps({"id": number, "method": method, "params": params}).encode()
        response, _ = ask(daemon.socket, line)
        assert response["ok"] and response["id"] == number, (method, response)
        assert RESULT_KEYS.get(method, set()) <= set(response["result"]), (method, response)
    drained, _ = ask(
        daemon.socket, b'{"id": 1, "method": "drain", "params": {"container": "gone"}}'
    )
    assert drained["result"]["safe"] is False
    found, _ = ask(daemon.socket, b'{"id": 2, "method": "find", "params": {"prompt": "duck"}}')
    assert found["error"]["code"] == "not_found"
