"""paramiko's private parts, used from one module that checks them at import (unit tier: no
sshd): a missing part fails with a message naming it, the installed paramiko version and
the supported range, which is the one pyproject.toml pins; and ChunkPipe, the channel
buffer that replaces paramiko's, behaves like it."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import paramiko
import pytest
from paramiko.buffered_pipe import PipeTimeout

from forge_syncd.transports.ssh import paramiko_patch
from forge_syncd.transports.ssh.paramiko_patch import (
    SUPPORTED,
    ChunkPipe,
    check_private_parts,
    missing_private_parts,
    paramiko_version,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_paramiko_has_every_private_part_we_use() -> None:
    """Against the paramiko this suite runs with, nothing is missing."""
    assert missing_private_parts() == []
    check_private_parts()


@pytest.mark.parametrize(
    ("owner", "attribute", "named"),
    [
        (paramiko.SFTPClient, "_request", "SFTPClient._request"),
        (paramiko.SFTPAttributes, "_from_msg", "SFTPAttributes._from_msg"),
        (paramiko.packet.Packetizer, "REKEY_BYTES", "Packetizer.REKEY_BYTES"),
        (paramiko.packet.Packetizer, "REKEY_PACKETS", "Packetizer.REKEY_PACKETS"),
        (paramiko.sftp, "CMD_READDIR", "sftp.CMD_READDIR"),
        (paramiko.buffered_pipe, "PipeTimeout", "buffered_pipe.PipeTimeout"),
        (paramiko.buffered_pipe, "BufferedPipe", "Channel.in_buffer"),
        (ChunkPipe, "read_ready", "Channel.in_buffer.read_ready()"),
    ],
)
def test_a_missing_private_part_fails_naming_it_the_version_and_the_range(
    monkeypatch: pytest.MonkeyPatch, owner: object, attribute: str, named: str
) -> None:
    """With one needed part gone (as in a paramiko release that renamed it), the check
    raises ImportError saying which part, which paramiko version and which range works."""
    monkeypatch.delattr(owner, attribute)
    with pytest.raises(ImportError) as raised:
        check_private_parts()
    message = str(raised.value)
    assert message.startswith(f"forge-syncd needs paramiko's private {named}")
    assert f"missing in paramiko {paramiko_version()};" in message
    assert message.endswith(f"supported: paramiko{SUPPORTED}")


def test_a_private_part_of_another_shape_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A part that exists but takes other arguments counts as missing too."""

    def from_msg(cls: type, message: object) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(paramiko.SFTPAttributes, "_from_msg", classmethod(from_msg))
    assert missing_private_parts() == ["SFTPAttributes._from_msg(msg, filename, longname)"]


def test_the_check_runs_when_the_module_is_imported() -> None:
    """Importing the module (as `connection.py` does) with a part missing fails at once."""
    code = (
        "import paramiko; del paramiko.SFTPClient._request\n"
        "import forge_syncd.transports.ssh.paramiko_patch\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert (
        "ImportError: forge-syncd needs paramiko's private SFTPClient._request(t, *args), "
        f"missing in paramiko {paramiko_version()}; supported: paramiko{SUPPORTED}"
    ) in done.stderr


def test_the_version_is_the_installed_one_and_the_range_is_the_pinned_one() -> None:
    """The message names the installed paramiko, and the range it gives is the one
    pyproject.toml pins (tested at its lower end by `scripts/check-min-paramiko`)."""
    assert paramiko_version() == importlib.metadata.version("paramiko")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"paramiko{SUPPORTED}" in project["dependencies"]
    assert paramiko_patch.SUPPORTED == SUPPORTED


def test_the_channel_buffer_hands_out_exactly_what_arrived() -> None:
    """ChunkPipe (every channel's stdout buffer): bytes come out in order, never more than
    asked for, across chunk boundaries; a timeout and the close behave like paramiko's."""
    pipe = ChunkPipe()
    event = threading.Event()
    pipe.set_event(event)
    assert not event.is_set() and not pipe.read_ready() and len(pipe) == 0
    with pytest.raises(PipeTimeout):
        pipe.read(10, timeout=0.05)
    sent = [os.urandom(n) for n in (1, 7, 32768, 5, 100_000, 3)]
    for chunk in sent:
        pipe.feed(chunk)
    assert event.is_set() and len(pipe) == sum(map(len, sent))
    got = bytearray()
    sizes = iter((3, 1, 40000, 1, 5000, 999) * 100)
    while len(got) < sum(map(len, sent)):
        size = next(sizes)
        piece = pipe.read(size, timeout=1)
        assert 0 < len(piece) <= size
        got += piece
    assert bytes(got) == b"".join(sent) and len(pipe) == 0 and not event.is_set()
    pipe.feed(b"tail")
    pipe.close()
    assert pipe.read(100) == b"tail" and pipe.read(100) == b"" and event.is_set()


def window_channel(window: int, threshold: int) -> paramiko.Channel:
    """A bare channel (no transport) set up as an open one that was granted `window`."""
    channel = paramiko.Channel(0)
    channel.active = True
    channel.in_window_size = window
    channel.in_window_threshold = threshold
    return channel


def test_a_capped_window_holds_adjusts_back_until_the_sender_has_at_most_the_cap() -> None:
    """`cap_window` (bwlimit auto): what the sender may have unread (granted, not yet
    read here) comes down to the cap by holding adjusts back, goes up to a larger cap by
    granting more than was read, and is given back in steps of at least the channel's."""
    channel = window_channel(1000, threshold=150)
    add = channel._check_add_window
    assert add(100) == 0  # paramiko's own: nothing until over its threshold
    assert add(100) == 200  # ... then what was read (the sender has 1000 again)
    channel = window_channel(1000, threshold=50)
    paramiko_patch.cap_window(channel, 400)
    assert channel._check_add_window(100) == 0  # 900 outstanding: over the cap
    assert channel._check_add_window(500) == 0  # 400: at the cap
    assert channel._check_add_window(30) == 0  # 370: 30 under it, less than a step
    assert channel._check_add_window(30) == 60  # 340: 60 back, 400 outstanding
    paramiko_patch.cap_window(channel, 1000)
    assert channel._check_add_window(10) == 610  # a larger cap: granted more than read
    channel.eof_received = True
    assert channel._check_add_window(500) == 0  # an ended channel adjusts nothing
