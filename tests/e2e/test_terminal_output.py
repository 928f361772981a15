"""Remote text on a terminal: never read as Rich markup, control characters printed escaped
(forge-syncctl `status` and `history`, and the console log renderer on a TTY)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import BIN, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.hostile import disabled, lying_sha256sum
from tests.support.sshd import SshdServer
from tests.support.terminal import run_in_terminal
from tests.support.trees import write_file

# One remote name with all of it: Rich markup (a closing tag that matches nothing), an OSC
# sequence that would retitle the terminal, BEL, a C1 CSI (U+009B), DEL and an emoji code.
HOSTILE_NAME = "x[/y]\x1b]0;owned\x07\x9b\x7f:thumbs_up:.png"
SHOWN_NAME = "x[/y]\\x1b]0;owned\\x07\\x9b\\x7f:thumbs_up:.png"
RAW_BYTES = (b"\x1b]0;owned", b"\x07", "\x9b".encode(), b"\x7f")


@dataclass
class Daemon:
    socket: Path
    process: subprocess.Popen[bytes]

    def ctl(self, *args: str) -> list[str]:
        return [str(BIN / "forge-syncctl"), "--socket", str(self.socket), *args]

    def status(self) -> dict[str, object]:
        done = subprocess.run(
            self.ctl("status", "--json"), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result


def failed_once(daemon: Daemon) -> bool:
    (container,) = daemon.status()["containers"]  # type: ignore[index]
    last = container["last_sync"]
    return bool(last and last["result"] == "failure")


@pytest.fixture(scope="module")
def hostile_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon whose container holds a file named HOSTILE_NAME and answers every
    `sha256sum` with a wrong digest (`verify: sha256`): each run fails with an error that
    begins with that name."""
    work = tmp_path_factory.mktemp("terminal")
    remote = work / "remote"
    write_file(remote / HOSTILE_NAME, os.urandom(1000), 1.7e9)
    # No python3 there: `sha256sum` is what hashes (python3 is preferred where it works).
    tools = disabled(lying_sha256sum(work / "bin"), "python3")
    server = SshdServer(work / "sshd", path_dirs=[tools]).start()
    config = write_config(work, server, remote, interval="1h", verify="sha256")
    process = start_daemon(config)
    daemon = Daemon(work / "run" / "control.sock", process)
    try:
        wait_until(lambda: daemon.socket.exists(), what="the control socket")
        wait_until(lambda: failed_once(daemon), timeout=60, what="the first sync to fail")
        yield daemon
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        server.stop()


def last_error(daemon: Daemon) -> str:
    (container,) = daemon.status()["containers"]  # type: ignore[index]
    error: str = container["last_sync"]["error"]
    return error


def test_status_and_history_with_a_markup_like_remote_name_do_not_crash(
    hostile_daemon: Daemon,
) -> None:
    """An error naming `x[/y]...` (a Rich closing tag that matches nothing) used to raise
    MarkupError: `status` and `history` exit 0 and print the name as it is, `[/y]` and
    `:thumbs_up:` literally, control characters escaped."""
    assert last_error(hostile_daemon).startswith(HOSTILE_NAME)
    for command in ("status", "history"):
        done = subprocess.run(
            hostile_daemon.ctl(command),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "250"},
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
        assert SHOWN_NAME in done.stdout
        assert "\N{THUMBS UP SIGN}" not in done.stdout


def test_remote_names_with_terminal_escapes_are_printed_escaped_in_a_terminal(
    hostile_daemon: Daemon,
) -> None:
    """In a terminal, `status` and `history` show ESC, BEL, C1 and DEL from a remote name
    as `\\x1b`, `\\x07`, `\\x9b`, `\\x7f`: none of them reaches the terminal raw (Rich's
    own styling sequences are the only escapes written)."""
    for command in ("status", "history"):
        code, output = run_in_terminal(hostile_daemon.ctl(command))
        text = output.decode(errors="replace")
        assert code == 0, text
        for raw in RAW_BYTES:
            assert raw not in output, (raw, text)
        assert SHOWN_NAME in text


CONSOLE_LOGGING = """
import logging
from forge_syncd import logs
logs.configure("info")
logs.get_logger(container="forge-a").warning(
    "file_skipped", path="evil\\x1b]0;owned\\x07.png", reason="c1 \\x9b31m del \\x7f"
)
logging.getLogger("paramiko.transport").critical("banner \\x1b[2J from the server")
try:
    raise ValueError("bad name \\x1b[6n")
except ValueError:
    logs.get_logger().error("sink_failed", exc_info=True)
"""


def test_console_log_renderer_escapes_control_characters_from_remote_text() -> None:
    """On a terminal, the human-readable log lines show control characters in values (ours
    and a library's) escaped, tracebacks keep their line breaks, and no ESC, BEL, C1 or
    DEL from the data reaches the terminal."""
    code, output = run_in_terminal([sys.executable, "-c", CONSOLE_LOGGING])
    text = output.decode(errors="replace")
    assert code == 0, text
    for raw in (b"\x1b]0;owned", b"\x07", "\x9b".encode(), b"\x7f", b"\x1b[2J", b"\x1b[6n"):
        assert raw not in output, (raw, text)
    assert "evil\\x1b]0;owned\\x07.png" in text
    assert "\\x9b31m" in text and "\\x7f" in text
    assert "banner \\x1b[2J from the server" in text
    assert "Traceback (most recent call last):" in text
    assert "ValueError: bad name \\x1b[6n" in text
