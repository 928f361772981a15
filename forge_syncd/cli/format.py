"""How forge-syncctl and `forge-syncd --once` write numbers for people: sizes and rates in
binary units (B, KiB, MiB, GiB, TiB; KiB/s, MiB/s), counts with their plural, durations
("1m 12s"), config durations as a user writes them ("30d"), and times in the local zone
with the zone shown ("2026-12-07 09:01 EST (3 min ago)"; UTC on request).

Pure and light (standard library only): the fast `status` path imports it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from forge_syncd.text import plural

__all__ = [
    "ago",
    "count_size",
    "duration",
    "local_time",
    "parse_time",
    "plural",
    "rate",
    "relative",
    "size",
    "size_pair",
    "spec_duration",
    "when",
]

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
SPEC_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def size(count: float) -> str:
    """Given a number of bytes, return it in the largest binary unit under 1024 of it:
    "0 B", "512 B", "1.5 KiB", "148.0 MiB", "1.21 GiB" (two decimals from GiB up)."""
    value = float(count)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            if unit == "B":
                return f"{value:.0f} B"
            return f"{value:.2f} {unit}" if unit in ("GiB", "TiB") else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def size_pair(done: float, total: float) -> str:
    """Given bytes done and bytes in all, return "69.8/148.0 MiB" (the total's unit)."""
    value, unit = float(total), "B"
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            break
        value /= 1024
    scale = 1024.0 ** UNITS.index(unit)
    if unit == "B":
        return f"{done:.0f}/{total:.0f} B"
    digits = 2 if unit in ("GiB", "TiB") else 1
    return f"{done / scale:.{digits}f}/{total / scale:.{digits}f} {unit}"


def rate(bytes_per_s: float) -> str:
    """Given bytes per second, return "20.0 MiB/s" (binary units, as `bwlimit` is written)."""
    return size(bytes_per_s) + "/s"


def count_size(files: int, nbytes: int, word: str = "file") -> str:
    """Return "1 file, 4.2 MiB" / "3 files, 12.0 KiB"."""
    return f"{plural(files, word)}, {size(nbytes)}"


def duration(seconds: float) -> str:
    """Given a length of time, return it as "0.4s", "42s", "1m 12s", "2h 5m" or "3d 4h"."""
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    for unit, size_s, small, small_s in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size_s:
            return f"{whole // size_s}{unit} {whole % size_s // small_s}{small}"
    return f"{whole // 60}m {whole % 60}s"


def spec_duration(seconds: float) -> str:
    """Given a config duration in seconds, return it as a user writes it in the config: the
    largest unit that divides it ("30d" for 720h, "90m", "45s")."""
    for unit, size_s in SPEC_UNITS:
        if seconds >= size_s and seconds % size_s == 0:
            return f"{seconds / size_s:g}{unit}"
    return f"{seconds:g}s"


def relative(seconds: float) -> str:
    """Given a (positive) distance in time, return it coarsely: "12 s", "3 min", "2 h",
    "3 days", "2 years" (rounded down)."""
    whole = int(abs(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        return f"{whole // 3600} h"
    if whole < 365 * 86400:
        return plural(whole // 86400, "day")
    return plural(whole // (365 * 86400), "year")


def parse_time(stamp: str) -> datetime:
    """Given an ISO 8601 time as the daemon writes it ("...Z"), return it (aware)."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def now_stamp() -> str:
    """Now as the daemon writes a run's start ("2026-05-01T12:00:00.123Z"): runs started
    since compare as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """Given an ISO 8601 time, return how far it is from now: "3 min ago", "in 4 min",
    "now"; "-" for None."""
    if not stamp:
        return "-"
    seconds = ((now or datetime.now(UTC)) - parse_time(stamp)).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"{relative(seconds)} ago" if seconds > 0 else f"in {relative(seconds)}"


def local_time(stamp: str, utc: bool = False, seconds: bool = False) -> str:
    """Given an ISO 8601 time, return it in the local zone (the process's `TZ`), or in UTC,
    with the zone's name: "2026-12-07 09:01 EST" (`seconds`: "09:01:30")."""
    moment = parse_time(stamp)
    moment = moment.astimezone(UTC) if utc else moment.astimezone()
    zone = "UTC" if utc else moment.strftime("%Z") or moment.strftime("%z")
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {zone}"


def when(stamp: str | None, utc: bool = False, now: datetime | None = None) -> str:
    """Return "2026-12-07 09:01 EST (3 min ago)"; "-" for None."""
    if not stamp:
        return "-"
    return f"{local_time(stamp, utc)} ({ago(stamp, now)})"
