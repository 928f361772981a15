"""The mtime rules (`forge_syncd.mtimes`): equality at the precision both sides have, and
when a copy counts as settled (git's racy rule) — at their boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge_syncd.mtimes import (
    FUTURE_SLACK_NS,
    NS,
    TICK_NS,
    in_range,
    older_than,
    same_mtime,
    settled_by,
    whole_seconds,
)

T = 1_700_000_000 * NS  # a whole second
MS = 1_000_000


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (T + 5, T + 5, True),  # the same nanosecond
        (T + 5, T + 6, False),  # one nanosecond apart: two writes find can tell apart
        (T + 100 * MS, T + 200 * MS, False),  # the same second: the bug of issue 23
        (T, T + 999_999_999, True),  # a whole-second source (SFTP) against nanoseconds
        (T + 999_999_999, T, True),
        (T, T + NS, False),  # another second
        (T - 1, T, False),  # 1 ns before the second: the second before
        (T + NS + 1, T, False),
    ],
)
def test_same_mtime_compares_at_the_precision_both_sides_have(a: int, b: int, same: bool) -> None:
    """Nanoseconds where both have them; seconds where either is a whole second."""
    assert same_mtime(a, b) is same


@pytest.mark.parametrize(
    ("mtime", "read_after", "settled"),
    [
        (T + 5, T + 5 + TICK_NS - 1, False),  # read within a clock tick: racy
        (T + 5, T + 5 + TICK_NS, False),  # the tick plus its own nanosecond is needed
        (T + 5, T + 5 + TICK_NS + 1, True),
        (T + 5, T + 10 * MS, False),
        (T + 5, T + 25 * MS, True),
        (T, T + 500 * MS, False),  # a whole-second mtime: the whole second is unknown
        (T, T + NS + TICK_NS - 1, False),
        (T, T + NS + TICK_NS, True),
        (T, T + 1030 * MS, True),
        (T + 3 * NS, T, False),  # a little ahead of the clock: racy, re-checked
        (T + FUTURE_SLACK_NS + 1, T, True),  # from the future: the two-look rule decides
        (T + FUTURE_SLACK_NS, T, False),
    ],
)
def test_a_copy_is_settled_only_a_tick_after_its_mtime(
    mtime: int, read_after: int, settled: bool
) -> None:
    """A copy read less than a clock tick (plus the mtime's own resolution: a nanosecond,
    or the whole second for a whole-second mtime) after its mtime is racy; a file from the
    future counts as settled."""
    assert settled_by(mtime, read_after) is settled


def test_dates_from_year_1_to_9999_are_in_range() -> None:
    """The range is the years 1 to 9999, not 1677-2262 (64-bit nanoseconds)."""
    assert in_range(-62_135_596_800 * NS) and in_range(253_402_300_799 * NS + NS - 1)
    assert not in_range(-62_135_596_800 * NS - 1) and not in_range(253_402_300_800 * NS)
    assert in_range(13_569_465_600 * NS)  # 2400


@given(st.integers(-(10**20), 10**20), st.integers(-(10**20), 10**20), st.integers(0, 10**12))
def test_older_than_is_inclusive_and_too_young_is_its_negation(
    mtime: int, now: int, span: int
) -> None:
    """A file exactly `span` old counts as old enough (settled, purgeable); one a
    nanosecond younger does not."""
    assert older_than(mtime, now, span) == (now - mtime >= span)
    assert older_than(now - span, now, span)
    assert not older_than(now - span + 1, now, span)


@pytest.mark.parametrize(
    ("mtime_ns", "seconds"),
    [(0, 0), (NS - 1, 0), (NS, 1), (-1, -1), (-NS, -1), (-NS - 1, -2), (17 * NS + 5, 17)],
)
def test_whole_seconds_is_the_floor(mtime_ns: int, seconds: int) -> None:
    """Whole seconds of an mtime are its floor, before 1970 too (as a tar header and SFTP
    give them): what the delete and the tar stream compare."""
    assert whole_seconds(mtime_ns) == seconds
