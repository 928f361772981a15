"""`bwlimit` as users write it, in rclone's form, parsed and evaluated (pure); the limits
themselves are `forge_syncd/limits/`.

A value is a rate (`20MiB/s`, or a number of bytes per second), `off`, `auto`, or a
timetable: entries `[Day-]HH:MM,RATE` separated by spaces or semicolons, e.g.
`"08:00,5MiB/s 23:00,off"` or `"Mon-00:00,512K Sat-00:00,off"`. An entry's rate holds from
its time until the next entry's (a timetable wraps round the week: before the first entry,
the last one holds). An entry without a day holds every day. Rates take our units (`KiB`,
`MiB/s`, ...) and rclone's (`512K`, `10M`, `1G`: binary, per second; a bare number in an
entry is KiB/s, as in rclone); rclone's `upload:download` pair gives its download rate (we
only download); `off` and `0` mean no limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from forge_syncd.config.units import parse_rate

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ENTRY = re.compile(r"^(?:([A-Za-z]{3})-)?([0-9]{1,2}):([0-9]{2}),(.+)$")
_RCLONE_RATE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([BKMGT]?)$", re.IGNORECASE)
_RCLONE_UNITS = {"": 1024, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MAX_ENTRIES = 100
# What the schema (and so etc/forge-sync.yaml) says of the keys.
BWLIMIT_HELP = (
    "bandwidth limit per container: a rate, off, auto (hold the queueing delay it adds under"
    " auto_delay) or a timetable in rclone's form"
)
AUTO_DELAY_HELP = "bwlimit auto: the queueing delay a transfer may add to the link's round trip"
CAP_HELP = "all containers' transfers together, fairly shared: a rate or a timetable"
HINT = (
    'expected a rate like 20MiB/s, off, auto, or a timetable like "08:00,5MiB/s 23:00,off"'
    " (entries [Day-]HH:MM,RATE; days Mon..Sun)"
)


@dataclass(frozen=True)
class Slot:
    """From `minute` of the week (Monday 00:00 = 0) on, `rate` bytes/s (None: no limit)."""

    minute: int
    rate: int | None


@dataclass(frozen=True)
class BwLimit:
    """A parsed `bwlimit`: `auto`, or a timetable of slots (a fixed rate is one slot)."""

    slots: tuple[Slot, ...] = ()
    auto: bool = False
    text: str = ""  # as written, for status and logs

    def rate_at(self, now: datetime) -> int | None:
        """Given a local time, return the rate that holds then (None: no limit; `auto`
        holds no fixed rate)."""
        if self.auto or not self.slots:
            return None
        minute = now.weekday() * 1440 + now.hour * 60 + now.minute
        current = self.slots[-1]  # wraps round the week
        for slot in self.slots:
            if slot.minute > minute:
                break
            current = slot
        return current.rate

    @property
    def timetable(self) -> bool:
        return len(self.slots) > 1


def fixed(rate: int | None) -> BwLimit:
    """Return the BwLimit of one fixed rate (None: no limit)."""
    return BwLimit((Slot(0, rate),), text="off" if rate is None else f"{rate}B/s")


AUTO = BwLimit(auto=True, text="auto")


def parse_bwlimit(value: object) -> BwLimit:
    """Given `bwlimit` as written (an int in bytes/s, a rate, off, auto or a timetable),
    return its BwLimit. Raise ValueError saying what is expected."""
    if value is False:  # YAML 1.1 reads an unquoted `off` as false
        return fixed(None)
    if isinstance(value, int) and not isinstance(value, bool):
        return fixed(parse_rate(value))
    if not isinstance(value, str) or len(value) > 4096:
        raise ValueError(HINT)
    text = value.strip()
    if text.lower() == "auto":
        return AUTO
    if text.lower() in ("off", "0"):
        return BwLimit((Slot(0, None),), text="off")
    if "," not in text:
        if _RCLONE_RATE.match(text) and not text[-1].isdigit():  # rclone's 10M
            return BwLimit((Slot(0, entry_rate(text, text)),), text=text)
        try:
            return BwLimit((Slot(0, parse_rate(text)),), text=text)
        except ValueError:
            raise ValueError(HINT) from None
    return BwLimit(_slots(text), text=text)


def _slots(text: str) -> tuple[Slot, ...]:
    """Given a timetable's text, return its slots over the week, sorted."""
    entries = [e for e in re.split(r"[\s;]+", text) if e]
    if len(entries) > MAX_ENTRIES:
        raise ValueError(f"a timetable has at most {MAX_ENTRIES} entries")
    by_minute: dict[int, int | None] = {}
    for entry in entries:
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"{HINT}; not {entry!r}")
        day, hour, minute, rate = match.groups()
        if int(hour) > 23 or int(minute) > 59:
            raise ValueError(f"{entry!r}: a time is HH:MM, 00:00 to 23:59")
        if day is not None and day.lower() not in DAYS:
            raise ValueError(f"{entry!r}: a day is one of Mon Tue Wed Thu Fri Sat Sun")
        of_day = int(hour) * 60 + int(minute)
        days = range(7) if day is None else (DAYS.index(day.lower()),)
        parsed = entry_rate(rate, entry)
        for weekday in days:
            by_minute[weekday * 1440 + of_day] = parsed
    return tuple(Slot(minute, rate) for minute, rate in sorted(by_minute.items()))


def entry_rate(text: str, entry: str) -> int | None:
    """Given a timetable entry's rate (ours, rclone's, `off`, or rclone's `up:down`),
    return bytes/s (None: no limit)."""
    if ":" in text:  # rclone's upload:download: we only download
        text = text.split(":", 1)[1]
    if text.lower() in ("off", "0"):
        return None
    match = _RCLONE_RATE.match(text)
    if match is not None:
        rate = int(float(match.group(1)) * _RCLONE_UNITS[match.group(2).lower()])
        return rate or None
    try:
        return parse_rate(text)
    except ValueError:
        raise ValueError(f"{entry!r}: {HINT}") from None


def parse_bwlimit_cap(value: object) -> BwLimit:
    """`limits.bwlimit`: a rate or a timetable (`auto` is a container's own). Raise
    ValueError."""
    limit = parse_bwlimit(value)
    if limit.auto:
        raise ValueError("the global cap takes a rate or a timetable, not auto")
    return limit
