"""Closing a channel on a connection whose peer just died: paramiko sends a close message
and its packetizer raises EOFError (or OSError, SSHException). `close_quietly` keeps that
from masking the error being handled; seen in a full CI run as a run failing with kind
`transfer` ("EOFError") instead of `connect` when sshd was killed mid-transfer."""

from __future__ import annotations

import paramiko
import pytest

from forge_syncd.transports.ssh.shells import close_quietly


class DyingChannel:
    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.tried = False

    def close(self) -> None:
        self.tried = True
        raise self.error


@pytest.mark.parametrize(
    "error", [EOFError(), ConnectionResetError(104, "reset"), paramiko.SSHException("gone")]
)
def test_a_close_that_fails_on_a_dead_connection_is_quiet(error: BaseException) -> None:
    channel = DyingChannel(error)
    close_quietly(channel)  # type: ignore[arg-type]
    assert channel.tried


def test_other_errors_are_not_hidden() -> None:
    with pytest.raises(ValueError):
        close_quietly(DyingChannel(ValueError("a defect")))  # type: ignore[arg-type]
