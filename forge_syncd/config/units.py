"""Durations, sizes and rates as users write them in the config."""

from __future__ import annotations

import math
import re

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")
# Longer durations are typos; they (and .inf/.nan) would overflow socket timeouts and
# datetime arithmetic in the daemon long after --check-config said the config was fine.
MAX_DURATION_S = 3650 * 86400


def parse_duration(value: object) -> float:
    """Given an integer (seconds) or "<number><unit>" (s m h d), return seconds.

    Raise ValueError with an example of the expected form.
    """
    hint = "expected a duration like 30s, 5m, 1h or 2d"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{hint}, not a negative number")
        return _bounded_duration(value, hint)
    match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
    if match is None or match.group(2) not in DURATION_UNITS:
        raise ValueError(hint)
    return _bounded_duration(float(match.group(1)) * DURATION_UNITS[match.group(2)], hint)


def _bounded_duration(seconds: float, hint: str) -> float:
    """Return `seconds` as a float; raise ValueError if it is not finite or over 3650d."""
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or seconds > MAX_DURATION_S:
        raise ValueError(f"{hint}, at most 3650d")
    return float(seconds)


def parse_delay(value: object) -> float:
    """Given a short delay, a number (seconds) or "<number><unit>" (ms, s), return seconds,
    1 ms to 10 s. Raise ValueError with an example."""
    hint = "expected a delay like 25ms or 0.1s, from 1ms to 10s"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
        if match is None or match.group(2) not in ("ms", "s"):
            raise ValueError(hint)
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    if not 0.001 <= seconds <= 10:
        raise ValueError(hint)
    return seconds


def parse_size(value: object) -> int:
    """Given an integer (bytes) or "<number><unit>" (B KiB MiB GiB TiB), return bytes."""
    hint = "expected a size like 500MiB or 50GiB (units B, KiB, MiB, GiB, TiB)"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{hint}, not a negative number")
        return value
    match = _NUMBER_UNIT.match(value) if isinstance(value, str) else None
    if match is None or match.group(2) not in SIZE_UNITS:
        raise ValueError(hint)
    size = float(match.group(1)) * SIZE_UNITS[match.group(2)]
    if not math.isfinite(size):  # hundreds of digits: float() gives inf, int(inf) raises
        raise ValueError(hint)
    return int(size)


def parse_rate(value: object) -> int:
    """Given a size per second ("20MiB/s", or a plain size), return bytes per second."""
    if isinstance(value, str) and value.strip().endswith("/s"):
        value = value.strip()[:-2]
    try:
        rate = parse_size(value)
    except ValueError:
        raise ValueError("expected a rate like 20MiB/s (units B, KiB, MiB, GiB)") from None
    if rate == 0:
        raise ValueError("a rate must be above 0 (use null for no limit)")
    return rate
