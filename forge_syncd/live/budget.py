"""What one live watcher may cost, and the records it sent that were no use, told in one line.

A watcher's output is untrusted (`transports/shell/watch.py`): a broken or hostile one can print
records as fast as the connection carries them. `WatchBudget` caps what one watcher may
send per window, in records and in bytes; past it the watcher counts as failed (live mode
closes it and starts a new one after a growing delay; the container polls meanwhile).
`ProblemTally` counts the records that were no use (unparsable or unknown, refused names,
files outside the synced folders, a repeated header, failures the watcher reported) and
gives one summary at most every `every_s`, with counts per reason and a few examples:
never one log line per record. Pure: the caller says what time it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forge_syncd.logs import printable

WINDOW_S = 10.0
# Per window: 2,000 records a second is far more than any generator writes files (a burst
# past it, such as a folder of 50,000 files moved in, is what a full run is for).
MAX_RECORDS = 20_000
MAX_BYTES = 8 * 1024 * 1024  # per window; an honest record is ~100 bytes
REPORT_EVERY_S = 60.0
MAX_REASONS = 12  # distinct reasons kept per summary (ours, so few); the rest is "other"
MAX_EXAMPLES = 3  # per summary, one per reason
MAX_EXAMPLE = 120  # characters of one example


class WatchBudget:
    """The records and bytes one watcher may send per window of `window_s` seconds."""

    def __init__(
        self,
        max_records: int = MAX_RECORDS,
        max_bytes: int = MAX_BYTES,
        window_s: float = WINDOW_S,
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.window_s = window_s
        self.records = 0
        self.bytes = 0
        self._start: float | None = None

    def spend(self, records: int, size: int, now: float) -> str | None:
        """Count what one read brought (`records`, `size` bytes) at `now` (monotonic s);
        return why the watcher is over its budget, or None."""
        if self._start is None or now - self._start >= self.window_s:
            self._start, self.records, self.bytes = now, 0, 0
        self.records += records
        self.bytes += size
        if self.records > self.max_records:
            return f"over budget: more than {self.max_records} records in {self.window_s:g} s"
        if self.bytes > self.max_bytes:
            return f"over budget: more than {self.max_bytes} bytes in {self.window_s:g} s"
        return None


@dataclass(frozen=True)
class ProblemSummary:
    """What `ProblemTally` counted over one period: how many records were skipped, how
    many for each reason, and a few examples (bounded, printable)."""

    skipped: int
    reasons: dict[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """`N records skipped: 5 unknown watcher record; 1 repeated watcher header`."""
        counts = "; ".join(f"{count} {reason}" for reason, count in self.reasons.items())
        noun = "record" if self.skipped == 1 else "records"
        return f"{self.skipped} {noun} skipped: {counts}"


class ProblemTally:
    """A watcher's records that were no use, counted by reason until the next summary."""

    def __init__(self, every_s: float = REPORT_EVERY_S) -> None:
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self.examples: dict[str, str] = {}
        self._last: float | None = None

    def __bool__(self) -> bool:
        return bool(self.counts)

    def add(self, reason: str, example: str = "", count: int = 1) -> None:
        """Count `count` records skipped for `reason` (one of ours, never remote text);
        `example` (remote text: a name, a message) may be kept, cut and made printable."""
        if reason not in self.counts and len(self.counts) >= MAX_REASONS:
            reason = "other"
        self.counts[reason] = self.counts.get(reason, 0) + count
        if example and reason not in self.examples and len(self.examples) < MAX_EXAMPLES:
            self.examples[reason] = printable(f"{reason}: {example[:MAX_EXAMPLE]}")[:MAX_EXAMPLE]

    def report(self, now: float, force: bool = False) -> ProblemSummary | None:
        """Given the time (monotonic s), return the summary of what was counted since the
        last one, or None: when nothing was, or the last summary is younger than `every_s`
        (unless `force`: the watcher ended). Counting then starts afresh."""
        if not self.counts:
            return None
        if not force and self._last is not None and now - self._last < self.every_s:
            return None
        summary = ProblemSummary(
            sum(self.counts.values()), dict(self.counts), tuple(self.examples.values())
        )
        self.counts.clear()
        self.examples.clear()
        self._last = now
        return summary
