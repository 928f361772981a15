"""Connection failures are classified, logged as SPEC's events, and never tracebacks."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

from forge_syncd.config.model import ContainerConfig
from forge_syncd.remote.connection import connect
from forge_syncd.runs import RunOutcome
from tests.conftest import make_container
from tests.support.runs import run_sync
from tests.support.sshd import SshdServer, free_port, make_key


def run(container: ContainerConfig, tmp_path: Path) -> RunOutcome:
    return run_sync(container, tmp_path / "media", tmp_path)


def with_ssh(container: ContainerConfig, **ssh: object) -> ContainerConfig:
    return dataclasses.replace(container, ssh=dataclasses.replace(container.ssh, **ssh))


def logged(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def test_changed_host_key_is_refused(sshd: SshdServer, tmp_path: Path) -> None:
    """A known_hosts entry with another key for the host:port refuses the connection, under
    strict and under accept-new alike."""
    other = make_key(tmp_path / "other")
    known = tmp_path / "known_hosts"
    keytype, blob = other.split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {keytype} {blob}\n")
    for policy in ("strict", "accept-new"):
        container = with_ssh(
            make_container(sshd, tmp_path), known_hosts=known, host_key_policy=policy
        )
        outcome = run(container, tmp_path)
        assert outcome.result == "failure"
        assert outcome.error_kinds == {"host_key"}
        assert "CHANGED" in (outcome.error or "")
    assert known.read_text().count("\n") == 1  # nothing learned over a changed key
    events = [r["event"] for r in logged(tmp_path)]
    assert "host_key_rejected" in events and "sync_failed" in events


def test_unknown_host_key_strict_refuses_accept_new_learns(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """strict refuses an unknown key; accept-new learns it into known_hosts and connects;
    the learned key is then checked like any other."""
    known = tmp_path / "learned_hosts"
    container = with_ssh(make_container(sshd, tmp_path), known_hosts=known)
    outcome = run(container, tmp_path)
    assert outcome.error_kinds == {"host_key"} and not known.exists()
    learn = with_ssh(container, host_key_policy="accept-new")
    assert run(learn, tmp_path).result == "success"
    assert known.read_text() == sshd.host_key_line()
    assert run(container, tmp_path).result == "success"  # now known, even under strict


def test_refused_key_is_an_auth_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A key the server does not accept gives kind `auth`."""
    make_key(tmp_path / "stranger")
    container = with_ssh(make_container(sshd, tmp_path), identity_file=tmp_path / "stranger")
    outcome = run(container, tmp_path)
    assert outcome.error_kinds == {"auth"}
    assert any(r["event"] == "ssh_connect_failed" and r["kind"] == "auth" for r in logged(tmp_path))


def test_closed_port_and_unknown_host_are_connect_errors(sshd: SshdServer, tmp_path: Path) -> None:
    """A closed port and a name that does not resolve give kind `connect`, fast."""
    closed = with_ssh(make_container(sshd, tmp_path), port=free_port())
    outcome = run(closed, tmp_path)
    assert outcome.error_kinds == {"connect"}
    assert "refused" in (outcome.error or "").lower()
    nowhere = dataclasses.replace(make_container(sshd, tmp_path), host="no-such-host.invalid")
    outcome = run(nowhere, tmp_path)
    assert outcome.error_kinds == {"connect"}
    assert "resolve" in (outcome.error or "")


def test_peer_that_is_not_ssh_is_a_connect_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A port that accepts and then says nothing SSH-like times out as `connect`."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        container = with_ssh(make_container(sshd, tmp_path), port=port, connect_timeout_s=1.0)
        outcome = run(container, tmp_path)
    assert outcome.error_kinds == {"connect"}
    assert not any("Traceback" in json.dumps(r) for r in logged(tmp_path))


def test_remote_output_after_the_exit_status_is_still_read(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """sshd may send a command's exit status before the rest of its output (here: the
    shell exits while a child it left behind still writes): a remote command's output is
    read up to the end of the stream, not cut at the exit status (regression: under load,
    the post-transfer `stat` lost names and good files were deferred as changed)."""
    container = make_container(sshd, tmp_path)
    connection = connect(container.host, container.ssh)
    try:
        late = b"\0".join(b"%d late" % n for n in range(20000))
        result = connection.run("(sleep 0.5; seq -f '%g late' 0 19999 | tr '\\n' '\\0') & exit 7")
    finally:
        connection.close()
    assert result.status == 7
    assert result.stdout.rstrip(b"\0") == late
