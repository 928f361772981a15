"""Connection failures are classified, logged as SPEC's events, and never tracebacks."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from pathlib import Path

import paramiko

from forge_syncd.config.model import ContainerConfig
from forge_syncd.jobs.record import RunOutcome
from forge_syncd.remote.errors import HostKeyError
from forge_syncd.transports.ssh.connection import connect, sh_command
from forge_syncd.transports.ssh.hostkeys import check_host_key, prefer_known_types
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
        result = connection.run(
            sh_command("(sleep 0.5; seq -f '%g late' 0 19999 | tr '\\n' '\\0') & exit 7")
        )
    finally:
        connection.close()
    assert result.status == 7
    assert result.stdout.rstrip(b"\0") == late


def pinned_line(server: SshdServer, key_type: str) -> str:
    """Given a server and one of its host key types, return that key's known_hosts line."""
    keytype, blob = (server.workdir / f"host_{key_type}.pub").read_text().split()[:2]
    return f"[127.0.0.1]:{server.port} {keytype} {blob}\n"


def test_accept_new_refuses_a_key_of_another_type_once_the_host_has_a_key(
    tmp_path: Path,
) -> None:
    """Regression (issue 14, item 8): with accept-new, an sshd offering only an ECDSA host
    key, for a host whose ed25519 key is pinned, had its ECDSA key learned. Now it is
    refused (kind host_key, under accept-new and strict alike), known_hosts is untouched
    and host_key_rejected is logged."""
    server = SshdServer(tmp_path / "ecdsa-only", host_key_types=("ecdsa",)).start()
    try:
        pinned = make_key(tmp_path / "pinned").split()
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{server.port} {pinned[0]} {pinned[1]}\n")
        before = known.read_text()
        for policy in ("accept-new", "strict"):
            container = with_ssh(
                make_container(server, tmp_path), known_hosts=known, host_key_policy=policy
            )
            outcome = run(container, tmp_path)
            assert outcome.result == "failure"
            assert outcome.error_kinds == {"host_key"}
            assert "offered a ecdsa-sha2-nistp256 key" in (outcome.error or "")
            assert "has only ssh-ed25519" in (outcome.error or "")
            assert known.read_text() == before
    finally:
        server.stop()
    assert "host_key_rejected" in [r["event"] for r in logged(tmp_path)]


def test_accept_new_learns_the_first_key_of_a_new_host_whatever_its_type(
    tmp_path: Path,
) -> None:
    """accept-new still learns an ECDSA key for a host it knows no key of, and checks it
    on the next connection like any pinned key."""
    server = SshdServer(tmp_path / "ecdsa-only", host_key_types=("ecdsa",)).start()
    try:
        known = tmp_path / "learned_hosts"
        container = with_ssh(
            make_container(server, tmp_path), known_hosts=known, host_key_policy="accept-new"
        )
        assert run(container, tmp_path).result == "success"
        assert known.read_text() == pinned_line(server, "ecdsa")
        strict = with_ssh(container, host_key_policy="strict")
        assert run(strict, tmp_path).result == "success"
    finally:
        server.stop()


def test_the_known_key_type_is_asked_for_first(tmp_path: Path) -> None:
    """A server with ed25519 and ECDSA host keys, whose ECDSA key alone is pinned, is
    checked against that key (the handshake asks for known types first, as OpenSSH does)
    rather than refused for showing its ed25519 key; pinning ed25519 alone works too."""
    server = SshdServer(tmp_path / "both", host_key_types=("ed25519", "ecdsa")).start()
    try:
        for key_type in ("ecdsa", "ed25519"):
            known = tmp_path / f"known_{key_type}"
            known.write_text(pinned_line(server, key_type))
            container = with_ssh(make_container(server, tmp_path), known_hosts=known)
            outcome = run(container, tmp_path)
            assert outcome.result == "success", outcome.error
            assert known.read_text() == pinned_line(server, key_type)
    finally:
        server.stop()


def test_parallel_first_connects_learn_one_key_type_only(tmp_path: Path) -> None:
    """Eight connects racing to learn a new host under accept-new, half shown an ed25519 and
    half an ECDSA key: the check is repeated under the known_hosts lock, so one key type is
    learned and every connect shown the other type is refused."""
    make_key(tmp_path / "ed")
    ed25519 = paramiko.PKey.from_path(tmp_path / "ed")
    ecdsa = paramiko.ECDSAKey.generate()
    known = tmp_path / "known_hosts"
    start = threading.Barrier(8)
    verdicts: list[tuple[str, bool | str]] = []

    def connect_once(key: paramiko.PKey) -> None:
        start.wait()
        try:
            verdicts.append(
                (key.get_name(), check_host_key(key, "10.1.2.3", 2222, known, "accept-new"))
            )
        except HostKeyError as exc:
            verdicts.append((key.get_name(), str(exc)))

    threads = [threading.Thread(target=connect_once, args=(k,)) for k in [ed25519, ecdsa] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    lines = known.read_text().splitlines()
    assert len(lines) == 1
    winner = lines[0].split()[1]
    assert sum(1 for kind, verdict in verdicts if verdict is True) == 1
    for kind, verdict in verdicts:
        if kind == winner:
            assert verdict in (True, False)
        else:
            assert isinstance(verdict, str) and f"has only {winner}" in verdict


def test_prefer_known_types_puts_known_algorithms_first() -> None:
    """Known key types move to the front in the client's order; `ssh-rsa` in known_hosts
    stands for the RSA signature algorithms; with nothing known the order is unchanged."""
    offered = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256")
    assert prefer_known_types(offered, ["ecdsa-sha2-nistp256"]) == (
        "ecdsa-sha2-nistp256",
        "ssh-ed25519",
        "rsa-sha2-512",
        "rsa-sha2-256",
    )
    assert prefer_known_types(offered, ["ssh-rsa"])[:2] == ("rsa-sha2-512", "rsa-sha2-256")
    assert prefer_known_types(offered, []) == offered
