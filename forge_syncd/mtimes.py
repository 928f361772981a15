"""Modification times: the one home of how two mtimes compare, when a copy is settled, and
which times are valid.

Times are Python ints of nanoseconds, unbounded: a file dated 2400 is as valid as one dated
2024 (ext4 holds dates to 2446); only storage that needs fixed-width numbers converts them
(`library/manifest/rows.py`).

Precision follows the source: GNU `find -printf %T@` and the live watchers give nanoseconds;
SFTP (protocol 3) and filesystems with coarse timestamps give whole seconds, which shows as
an mtime that is an exact multiple of a second. Two mtimes are equal when they are the same
nanosecond; where either is a whole second (its source had only seconds), when they fall in
the same second.
"""

from __future__ import annotations

NS = 1_000_000_000
# The kernel stamps mtimes from a coarse clock (one tick: 1-10 ms for HZ 1000-100), so two
# writes within one tick can carry the very same nanoseconds. A copy read less than this
# after its mtime could have been rewritten with the same size and mtime (git's "racily
# clean" entry): it is re-checked on the next look (`settled_by`).
TICK_NS = 20_000_000
# A file whose mtime is further than this ahead of the container's clock is "from the
# future" (touched, copied with its times, a clock that stepped back). No read can come a
# tick after such an mtime, so no copy of it is ever settled by time: it is ready once two
# looks in a row saw the same size and mtime (`sync/plan.py`), and its copy counts as
# settled. Closer than this is clock noise (offsets under 2 s are not corrected).
FUTURE_SLACK_NS = 10 * NS
# The oldest and newest mtimes taken as real dates (years 1 to 9999: what a date can be
# written as in the events and catalogs); a remote claiming another is refused.
MIN_MTIME_S = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_MTIME_S = 253_402_300_799  # 9999-12-31T23:59:59Z
MTIME_OUT_OF_RANGE = "mtime out of range (before year 1 or after 9999)"


def whole_second(mtime_ns: int) -> bool:
    """Return whether an mtime carries no fraction of a second (its source gave seconds)."""
    return mtime_ns % NS == 0


def whole_seconds(mtime_ns: int) -> int:
    """Given an mtime (ns), return its whole seconds (the floor, before 1970 too): what
    SFTP's attributes and a tar header carry."""
    return mtime_ns // NS


def older_than(mtime_ns: int, now_ns: int, span_ns: int) -> bool:
    """Given an mtime, a time (both by the container's clock) and a span, return whether
    the mtime is at least `span_ns` before `now_ns`: a file left alone that long (settled,
    old enough to purge). Its negation is "too young"."""
    return mtime_ns <= now_ns - span_ns


def same_mtime(a_ns: int, b_ns: int) -> bool:
    """Return whether two mtimes are the same, at the precision both have: to the
    nanosecond, or to the second where either came from a source with whole seconds."""
    if a_ns == b_ns:
        return True
    return (whole_second(a_ns) or whole_second(b_ns)) and whole_seconds(a_ns) == whole_seconds(b_ns)


def settled_by(mtime_ns: int, read_after_ns: int) -> bool:
    """Given a file's mtime and a time (the container's clock) before which its bytes were
    not read, return whether any later rewrite must show another mtime: the read came a
    clock tick (plus the second, for a whole-second mtime) after the mtime. False: the copy
    is "racy" and must be checked again by a later look. A file from the future (further
    ahead than FUTURE_SLACK_NS) counts as settled: no time ever can, the two-look rule
    decided it was ready."""
    if mtime_ns > read_after_ns + FUTURE_SLACK_NS:
        return True
    resolution = NS if whole_second(mtime_ns) else 1
    return mtime_ns + resolution + TICK_NS <= read_after_ns


def in_range(mtime_ns: int) -> bool:
    """Return whether an mtime is a date between the years 1 and 9999."""
    return MIN_MTIME_S * NS <= mtime_ns <= MAX_MTIME_S * NS + NS - 1


def parse_seconds(text: bytes) -> int | None:
    """Given a time as GNU find's `%T@` and `date +%s.%N` print it — the whole seconds (the
    floor: negative before 1970), a point, then the nanoseconds after them (never negative:
    1960-01-01T00:00:00.000000005 is `-315619200.000000005`) — return nanoseconds, or None
    if it is not such a number (at most 20 digits before the point and 12 after: a
    5,000-digit number is refused before `int()`)."""
    whole, dot, frac = text.partition(b".")
    digits = whole[1:] if whole.startswith(b"-") else whole
    if not (digits.isdigit() and len(digits) <= 20 and len(frac) <= 12):
        return None
    if dot and frac and not frac.isdigit():
        return None
    return int(whole) * NS + int((frac + b"000000000")[:9])
