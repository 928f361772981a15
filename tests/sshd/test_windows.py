"""The round trip is measured inside SSH, on the first channels opened (the capability
probe's), and sizes the channels' receive windows: through an emulated 60 ms link they grow, on loopback they stay at paramiko's
default, and never past the per-container bound."""

from __future__ import annotations

from pathlib import Path

from forge_syncd.transports.ssh.connection import connect, sh_command
from forge_syncd.transports.ssh.window import DEFAULT_WINDOW, MAX_WINDOW, window_for
from tests.conftest import make_container
from tests.support.sshd import SshdServer
from tests.support.wan import WanLink, through


def test_windows_grow_through_a_slow_link_and_not_on_loopback(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Through a 60 ms link the round trip measured on the first channel is at least 60 ms
    (the link's delay: a lower bound no load can break), and the next exec channel (the
    tar stream's) advertises a window above the default, within MAX_WINDOW; SFTP channels
    of 4 transfers share that budget. Directly on loopback: the window the measured round
    trip asks for (no assertion on how fast loopback answers)."""
    local = connect("127.0.0.1", make_container(sshd, tmp_path).ssh)
    try:
        local.run(sh_command(":"))  # the first channel: measures the round trip
        assert local.rtt_s is not None and local.rtt_s > 0
        channel = local.transport.open_session(window_size=local.window())
        # The window follows the round trip measured (on loopback, well under the 16 ms
        # where it starts to grow, unless the machine is busy), never past the bound.
        assert channel.in_window_size == window_for(local.rtt_s) <= MAX_WINDOW
        channel.close()
    finally:
        local.close()
    with WanLink(sshd.port, rtt_s=0.06, rate_bps=25e6) as link:
        view = through(sshd, link, tmp_path / "link_known_hosts")
        far = connect("127.0.0.1", make_container(view, tmp_path).ssh)
        try:
            far.run(sh_command(":"))
            assert far.rtt_s is not None and far.rtt_s >= 0.06
            session = far.transport.open_session(window_size=far.window())
            assert DEFAULT_WINDOW < session.in_window_size <= MAX_WINDOW
            session.close()
            sftp = far.open_sftp(channels=4)
            sftp_channel = sftp.get_channel()
            assert sftp_channel is not None
            assert sftp_channel.in_window_size * 4 <= max(MAX_WINDOW, 4 * DEFAULT_WINDOW)
            sftp.close()
        finally:
            far.close()
