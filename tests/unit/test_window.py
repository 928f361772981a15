"""Receive windows sized from the measured round trip (pure): never below paramiko's
default, never above the per-container budget, growing with the round trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.transports.ssh.window import DEFAULT_WINDOW, MAX_WINDOW, window_for


@given(st.floats(min_value=0, max_value=10, allow_nan=False), st.integers(1, 16))
def test_a_window_stays_within_its_memory_bound(rtt_s: float, channels: int) -> None:
    """Each channel gets at least paramiko's 2 MiB default (loopback and LAN are unchanged)
    and all the channels of one container together at most MAX_WINDOW (8 MiB), unless
    their 2 MiB floors alone are more."""
    window = window_for(rtt_s, channels)
    assert window >= DEFAULT_WINDOW
    assert window * channels <= max(MAX_WINDOW, channels * DEFAULT_WINDOW)


def test_the_window_grows_with_the_round_trip() -> None:
    """Loopback keeps the default; 100 ms gets the whole budget on one channel (2 MiB per
    100 ms capped a 25 MB/s link at ~13 MB/s); four SFTP channels share it."""
    assert window_for(0.0002) == DEFAULT_WINDOW
    assert DEFAULT_WINDOW < window_for(0.02) < MAX_WINDOW
    assert window_for(0.1) == MAX_WINDOW == window_for(0.25)
    assert window_for(0.1, 4) == MAX_WINDOW // 4
