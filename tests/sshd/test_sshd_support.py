"""The test sshd gives sessions an empty HOME: this machine's login scripts never run in them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.sshd import SshdServer


def remote_shell(server: SshdServer, command: str) -> str:
    """Given a server and a shell command, run it over ssh; return its stdout."""
    done = subprocess.run(
        [*server.ssh_command(), f"{server.user}@127.0.0.1", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_sessions_get_an_empty_home_of_their_own(sshd: SshdServer) -> None:
    """A session's HOME is the server's own empty folder, so no ~/.bashrc of the account the
    tests run as (root's runs `pyenv rehash`) is read: the shell prints only what it is told."""
    out = remote_shell(sshd, 'printf "%s\\n" "$HOME"; ls -A "$HOME"')
    assert out.splitlines() == [str(sshd.workdir / "home")]
    assert sshd.session_home == sshd.workdir / "home"


def test_a_prepared_home_runs_its_bashrc_on_purpose(tmp_path: Path) -> None:
    """A test that wants a chatty `.bashrc` passes a prepared `home`; sshd's bash reads it,
    and the PATH given by `path_dirs` still reaches the session (one SetEnv line holds both)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("echo hello-from-bashrc\n")
    tools = tmp_path / "tools"
    tools.mkdir()
    server = SshdServer(tmp_path / "sshd", path_dirs=[tools], home=home).start()
    try:
        out = remote_shell(server, 'printf "%s|%s\\n" "$HOME" "$PATH"')
    finally:
        server.stop()
    assert out.splitlines() == ["hello-from-bashrc", f"{home}|{tools}:/usr/bin:/bin"]
