"""Fuzzing the two things anyone can feed the daemon: the config file (through the installed
`forge-syncd --check-config`, as a user would) and the control socket (of a running daemon).

tests/test_config.py fuzzes the loader in-process and tests/test_control.py sends random
single lines; here the documents are nastier (deep nesting, alias bombs, huge numbers,
non-finite floats, non-UTF-8 bytes) and go through the real CLI, and the socket gets raw
bytes with any number of newlines, then must still answer `hello` and `status`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import BIN, forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.sshd import SshdServer, make_key
from tests.support.trees import tree_files, write_file

# ---------------------------------------------------------------- config documents

KEYS = [
    "media_root",
    "state_dir",
    "log",
    "level",
    "file",
    "control",
    "socket",
    "metrics",
    "listen",
    "defaults",
    "ssh",
    "sync",
    "cleanup",
    "containers",
    "name",
    "kind",
    "host",
    "root",
    "folders",
    "port",
    "user",
    "interval",
    "schedule",
    "settle",
    "transfers",
    "bwlimit",
    "max_file_size",
    "older_than",
    "connect_timeout",
    "keepalive",
    "include",
    "preserve",
    "ingest",
    "type",
    "timeout",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["5m", "0s", "1e9d", "99999999999999999999d", "20MiB/s", "*/5 * * * *"]),
    st.sampled_from(["-1", "generic", "forge", "127.0.0.1:0", "[::1]:99999", "/", "..", "-rf"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)


@dataclass(frozen=True)
class Paths:
    """Real files a config may name, so validation gets past `identity_file`."""

    work: Path
    key: Path
    known_hosts: Path


def base_config(paths: Paths) -> dict[str, Any]:
    """Return a valid config as plain data (one container, metrics off)."""
    return {
        "media_root": str(paths.work / "media"),
        "state_dir": str(paths.work / "state"),
        "control": {"socket": str(paths.work / "run" / "control.sock")},
        "metrics": {"listen": None},
        "defaults": {
            "ssh": {"identity_file": str(paths.key), "known_hosts": str(paths.known_hosts)},
            "sync": {"interval": "5m"},
        },
        "containers": [{"name": "forge-a", "kind": "generic", "host": "h", "root": "/r"}],
    }


def mutated(paths: Paths, where: list[str], value: object) -> bytes:
    """Return the valid base config with the value at key path `where` replaced (keys that
    are missing are created), dumped as YAML."""
    document = base_config(paths)
    node: Any = document
    for key in where[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[0]
        if not isinstance(node, dict | list) or (isinstance(node, list) and not node):
            return yaml.safe_dump(document).encode()
    target = node if isinstance(node, dict) else node[0]
    target[where[-1]] = value
    return yaml.safe_dump(document).encode()


def nested(depth: int, opener: str, closer: str) -> bytes:
    return f"media_root: {opener * depth}1{closer * depth}\n".encode()


def alias_bomb(width: int, levels: int) -> bytes:
    lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return ("\n".join(lines) + "\n").encode()


def spliced(document: bytes, junk: bytes, at: int) -> bytes:
    """Return `document` with `junk` (any bytes, often not UTF-8) inserted at `at`."""
    at = at % (len(document) + 1)
    return document[:at] + junk + document[at:]


def documents(paths: Paths) -> st.SearchStrategy[bytes]:
    """Config files as bytes: random YAML values, mutations of a valid config at real key
    paths, deep nesting, anchors and aliases, and random bytes spliced in."""
    paths_strategy = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3)
    return st.one_of(
        values.map(lambda v: yaml.safe_dump(v).encode()),
        st.builds(lambda w, v: mutated(paths, w, v), paths_strategy, values),
        st.builds(
            nested,
            st.integers(1, 20_000),
            st.sampled_from(["[", "{a: ", "[{a: "]),
            st.sampled_from(["]", "}", "}]"]),
        ),
        st.builds(alias_bomb, st.integers(1, 12), st.integers(0, 9)),
        st.builds(
            lambda v: (
                b"media_root: &m "
                + yaml.safe_dump(v, default_flow_style=True).encode()
                + b"state_dir: *m\ncontainers: [*m, &n {name: *m}, *n]\n"
            ),
            values,
        ),
        st.builds(
            spliced,
            st.builds(lambda w, v: mutated(paths, w, v), paths_strategy, scalars),
            st.binary(min_size=1, max_size=20),
            st.integers(0, 2000),
        ),
        st.binary(max_size=200),
    )


@pytest.fixture(scope="module")
def config_paths(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    work = tmp_path_factory.mktemp("fuzz-config")
    make_key(work / "id_ed25519")
    (work / "known_hosts").write_text("")
    return Paths(work, work / "id_ed25519", work / "known_hosts")


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `forge-syncd --check-config` on `path` (bounded against hangs)."""
    return forge_syncd("--check-config", "--config", str(path), timeout=60)


def assert_clean_verdict(result: subprocess.CompletedProcess[str], document: bytes) -> None:
    assert result.returncode in (0, 2), (result.returncode, result.stderr[-2000:], document[:500])
    assert "Traceback" not in result.stderr, (result.stderr[-2000:], document[:500])
    if result.returncode == 2:
        assert result.stderr.strip(), "exit 2 must say why"


@settings(
    max_examples=45,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_check_config_cli_exits_0_or_2_without_traceback(
    config_paths: Paths, data: st.DataObject
) -> None:
    """Whatever bytes the config file holds, `forge-syncd --check-config` answers with exit 0
    (a summary) or 2 (the problems, on stderr), never a traceback, a crash or a hang."""
    document = data.draw(documents(config_paths))
    path = config_paths.work / "fuzz.yaml"
    path.write_bytes(document)
    assert_clean_verdict(check_config(path), document)


REGRESSIONS = {
    # PyYAML's composer recursed until RecursionError (a traceback, exit 1).
    "deep_flow_nesting": nested(5000, "[", "]"),
    "deep_mapping_nesting": nested(3000, "{a: ", "}"),
    # A 5000-digit integer hit Python's int conversion limit (ValueError traceback).
    "integer_over_4300_digits": b"media_root: /m\nstate_dir: " + b"9" * 5000 + b"\n",
    # A 400-digit duration overflowed float() (OverflowError traceback).
    "duration_int_too_large_for_float": b"defaults: {sync: {settle: " + b"9" * 400 + b"}}\n",
    # A 400-digit size became inf and int(inf) raised.
    "size_of_400_digits": b"defaults: {sync: {max_file_size: " + b"9" * 400 + b"GiB}}\n",
    # Nine aliases of nine aliases of ...: 4.7 million values, 9 s and GBs to expand.
    "alias_bomb": alias_bomb(9, 7),
    # An alias of itself.
    "recursive_alias": b"&a {b: *a}\n",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_hostile_yaml_regressions_exit_2(config_paths: Paths, name: str) -> None:
    """Each document that once crashed or stalled the validator is now refused with exit 2
    and a file:line message."""
    path = config_paths.work / f"{name}.yaml"
    path.write_bytes(REGRESSIONS[name])
    result = check_config(path)
    assert_clean_verdict(result, REGRESSIONS[name])
    assert result.returncode == 2
    assert result.stderr.startswith(f"{path}:"), result.stderr[:500]


@pytest.mark.parametrize("value", [".inf", ".nan", "1.0e+300", "99999999999999999999", "3651d"])
def test_non_finite_or_absurd_durations_are_refused_not_crashing_the_daemon(
    config_paths: Paths, value: str
) -> None:
    """`interval: .inf` (or .nan, or 1e20 seconds) used to pass --check-config and then make
    `--once` and the daemon die with an OverflowError/ValueError traceback in
    sock.settimeout. Durations must be finite and at most 3650d; the config is refused."""
    path = config_paths.work / "durations.yaml"
    path.write_text(
        yaml.safe_dump(base_config(config_paths)).replace("interval: 5m", f"interval: {value}")
    )
    assert f"interval: {value}" in path.read_text()
    result = check_config(path)
    assert result.returncode == 2, result.stdout
    assert "interval: expected a duration" in result.stderr
    once = forge_syncd("--once", "--config", str(path), timeout=60)
    assert once.returncode == 2 and "Traceback" not in once.stderr


# ---------------------------------------------------------------- the control socket


@dataclass
class Daemon:
    work: Path
    socket: Path
    process: subprocess.Popen[bytes]

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "forge-syncctl"), "--socket", str(self.socket), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def daemon(sshd: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One real daemon (one container with a few files, synced) for the socket fuzzing."""
    work = tmp_path_factory.mktemp("fuzz-socket")
    remote = work / "remote"
    for i in range(3):
        write_file(remote / "day" / f"{i}.png", os.urandom(5_000), 1.7e9)
    config = write_config(work, sshd, remote, interval="1h")
    process = start_daemon(config)
    running = Daemon(work, work / "run" / "control.sock", process)
    wait_until(lambda: running.socket.exists(), what="the control socket")
    wait_until(lambda: len(tree_files(work / "media" / "forge-a")) == 3, what="first sync")
    yield running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


SENTINEL = b'{"id": "sentinel-7f3a", "method": "hello"}\n'
METHODS = ["hello", "status", "history", "sync", "cleanup", "cancel", "pause", "resume", "nope"]

json_requests = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats()),
        "method": st.one_of(st.sampled_from(METHODS), st.text(max_size=6), st.integers()),
        "params": st.one_of(
            st.dictionaries(
                st.sampled_from(["containers", "wait", "dry_run", "limit", "name", "x"]),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(-(10**30), 10**30),
                    st.text(max_size=6),
                    st.lists(st.sampled_from(["forge-a", "nope", ""]), max_size=3),
                ),
                max_size=3,
            ),
            st.lists(st.integers(), max_size=2),
            st.text(max_size=5),
        ),
    },
).map(lambda d: json.dumps(d).encode())

socket_input = st.lists(
    st.one_of(
        st.binary(max_size=400),  # may hold any number of newlines, NULs, invalid UTF-8
        json_requests,
        json_requests.map(lambda line: line[: len(line) // 2]),  # a request cut in half
        st.sampled_from([b"\r", b"\n\n\n", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b" "]),
    ),
    min_size=1,
    max_size=6,
).map(lambda parts: b"\n".join(parts) + b"\n")


def converse(path: Path, data: bytes) -> list[dict[str, Any]]:
    """Send `data` then the sentinel `hello` on one connection; return every response line
    up to the sentinel's answer (or until the daemon closes the connection)."""
    responses: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(path))
        sock.sendall(data + SENTINEL)
        reader = sock.makefile("rb")
        for line in reader:
            responses.append(json.loads(line))
            if responses[-1].get("id") == "sentinel-7f3a":
                break
    return responses


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=socket_input)
def test_random_bytes_on_the_socket_get_json_answers_and_leave_it_usable(
    daemon: Daemon, data: bytes
) -> None:
    """Any bytes (many lines, broken JSON, invalid UTF-8, half requests, random methods and
    params) get only well-formed JSON responses, and a `hello` after them on the same
    connection is still answered: junk never wedges a connection or the daemon."""
    responses = converse(daemon.socket, data)
    assert responses, "no answer at all"
    for response in responses:
        assert response["ok"] in (True, False), response
        if response["ok"] is False:
            assert isinstance(response["error"]["code"], str), response
    assert responses[-1] == {
        "id": "sentinel-7f3a",
        "ok": True,
        "result": {"protocol": 1, "version": responses[-1]["result"]["version"]},
    }
    assert daemon.process.poll() is None


def test_oversized_line_and_abrupt_disconnects_leave_the_daemon_answering(
    daemon: Daemon,
) -> None:
    """A line over 1 MiB gets `too_large` and its connection closed; clients that hang up
    mid-line or mid-response don't matter; afterwards `hello` and `status` still answer
    through forge-syncctl and the process is alive."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(daemon.socket))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            # the daemon may close before reading it all
            sock.sendall(b"x" * (1024 * 1024 + 10) + b"\n" + SENTINEL)
        first = json.loads(sock.makefile("rb").readline())
    assert first["error"]["code"] == "too_large"
    for data in [b'{"id": 1, "method": "sta', b"\xff" * 70_000, b'{"method": "status"}\n']:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(daemon.socket))
            sock.sendall(data)  # and hang up without reading
    assert daemon.process.poll() is None
    hello = daemon.ctl("status", "--json")
    assert hello.returncode == 0, hello.stderr
    assert json.loads(hello.stdout)["daemon"]["pid"] == daemon.process.pid
    assert converse(daemon.socket, b"")[-1]["result"]["protocol"] == 1
