"""Notification sinks in a running forge-syncd: a message survives kill -9 between its
recording and its delivery, a repeat after a crash is not a second ntfy notification, a
drain's verdict is said, and a missing or loose secret file is a config error (exit 2)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.support.cli import forge_syncd, write_config
from tests.support.daemon import start_daemon, wait_until
from tests.support.notify_events import NTFY_TOKEN, secret_file
from tests.support.notify_services import GotifyFake, NtfyFake
from tests.support.notify_services.gotify import GOTIFY_TOKEN
from tests.support.sshd import SshdServer
from tests.support.trees import write_file


def images(remote: Path, count: int) -> None:
    for i in range(count):
        write_file(remote / "day" / f"{i:03d}.png", b"\x89PNG\r\n\x1a\n" + os.urandom(900), 1.7e9)


def with_sink(config: Path, sink: str) -> None:
    config.write_text(config.read_text() + f"ingest:\n  - {sink}\n")


def ntfy_config(tmp_path: Path, sshd: SshdServer, ntfy: NtfyFake) -> Path:
    remote = tmp_path / "remote"
    images(remote, 3)
    config = write_config(tmp_path, sshd, remote, interval="1h")
    token = secret_file(tmp_path, "ntfy.token", NTFY_TOKEN)
    with_sink(config, f"{{name: phone, type: ntfy, url: '{ntfy.url}/forge', token_file: {token}}}")
    return config


def log_text(tmp_path: Path) -> str:
    path = tmp_path / "log" / "forge-syncd.jsonl"
    return path.read_text() if path.exists() else ""


def kill_9(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=20)


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0


def test_kill_9_between_recording_and_delivery_loses_no_message(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """ntfy is down when 3 images land: the message is recorded, not delivered; forge-syncd
    is killed -9; ntfy comes back; after a restart ntfy gets the message, once, and the
    daemon's log never holds the token."""
    ntfy = NtfyFake(token=NTFY_TOKEN)
    ntfy.start()
    ntfy.go_down()
    config = ntfy_config(tmp_path, sshd, ntfy)
    daemon = start_daemon(config)
    try:
        wait_until(lambda: "sink_delivery_failed" in log_text(tmp_path), what="a failed delivery")
    finally:
        kill_9(daemon)
    ntfy.come_up()
    daemon = start_daemon(config)
    try:
        ntfy.wait_for(1, timeout=60)
    finally:
        stop(daemon)
        ntfy.stop()
    assert [m["message"].split("\n")[0] for m in ntfy.messages] == ["3 new images, 2.7 KiB"]
    assert ntfy.messages[0]["title"] == "forge-a"
    assert "ntfy did not answer" in log_text(tmp_path)
    assert NTFY_TOKEN not in log_text(tmp_path)


def test_kill_9_after_ntfy_took_the_message_is_not_a_second_notification(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """ntfy takes the message but forge-syncd is killed -9 before it hears the answer: after
    a restart the message is sent again with the same X-Sequence-ID, so the subscriber still
    sees one notification."""
    with NtfyFake(token=NTFY_TOKEN) as ntfy:
        ntfy.hold()
        config = ntfy_config(tmp_path, sshd, ntfy)
        daemon = start_daemon(config)
        try:
            ntfy.wait_for(1, timeout=60)
        finally:
            kill_9(daemon)
        ntfy.release()
        daemon = start_daemon(config)
        try:
            ntfy.wait_for(2, timeout=60)
        finally:
            stop(daemon)
    keys = [r.headers["x-sequence-id"] for r in ntfy.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(ntfy.messages) == 2 and len(ntfy.shown()) == 1


def test_drain_says_safe_to_destroy(sshd: SshdServer, tmp_path: Path) -> None:
    """`forge-syncd --once --drain` with a Gotify sink: Gotify hears that 3 images landed and
    that the box is safe to destroy, with the files verified."""
    remote = tmp_path / "remote"
    images(remote, 3)
    config = write_config(tmp_path, sshd, remote)
    with GotifyFake() as gotify:
        token = secret_file(tmp_path, "gotify.token", GOTIFY_TOKEN)
        with_sink(config, f"{{name: push, type: gotify, url: '{gotify.url}', token_file: {token}}}")
        result = forge_syncd("--once", "--drain", "--container", "forge-a", "--config", str(config))
        assert result.returncode == 0, result.stderr
    said = [(m["title"], m["message"].split("\n")[0]) for m in gotify.messages]
    assert said == [
        ("forge-a", "3 new images, 2.7 KiB"),
        ("forge-a", "safe to destroy: 3 files, 2.7 KiB verified"),
    ]


def test_missing_or_loose_secret_file_is_a_config_error(sshd: SshdServer, tmp_path: Path) -> None:
    """A token_file that does not exist, and a bot_token_file others can read, are config
    errors naming the file, line and key (exit 2); the secret's content is never shown."""
    remote = tmp_path / "remote"
    remote.mkdir()
    config = write_config(tmp_path, sshd, remote)
    loose = tmp_path / "telegram.token"
    loose.write_text("123:SECRET-in-a-loose-file\n")
    loose.chmod(0o644)
    config.write_text(
        config.read_text()
        + "ingest:\n"
        + f"  - {{name: phone, type: ntfy, url: 'https://ntfy.sh/x', token_file: {tmp_path}/no}}\n"
        + f"  - {{name: me, type: telegram, bot_token_file: {loose}, chat_id: '1'}}\n"
    )
    lines = config.read_text().splitlines()
    result = forge_syncd("--check-config", "--config", str(config))
    assert result.returncode == 2
    first = lines.index(next(line for line in lines if "name: phone" in line)) + 1
    assert (
        f"{config}:{first}: ingest[0].token_file: file {tmp_path}/no cannot be read:"
        " No such file or directory" in result.stderr
    )
    assert f"{config}:{first + 1}: ingest[1].bot_token_file: file {loose} has mode 0644" in (
        result.stderr
    )
    assert "SECRET" not in result.stderr + result.stdout
