"""When a burst of watcher records ends, so that its complete files are synced by one run.

A burst ends DEBOUNCE_S after its latest record, or MAX_BATCH_S after its first (a burst
that never pauses is synced every second). Pure: the caller passes the monotonic clock.
"""

from __future__ import annotations

DEBOUNCE_S = 0.1
MAX_BATCH_S = 1.0


class Burst:
    """The records of one burst: when its first and latest came (0.0: no burst going)."""

    def __init__(self) -> None:
        self.first = 0.0
        self.last = 0.0

    def __bool__(self) -> bool:
        return bool(self.first)

    def noted(self, now: float) -> None:
        """A change came at `now`: it starts a burst, or extends the one going."""
        self.first = self.first or now
        self.last = now

    def reset(self) -> None:
        """The burst was taken (or cancelled itself): none is going."""
        self.first = self.last = 0.0

    def over(self, now: float) -> bool:
        """Whether the burst going has ended at `now`."""
        return bool(self.first) and (
            now - self.last >= DEBOUNCE_S or now - self.first >= MAX_BATCH_S
        )

    def ends_in(self, now: float) -> float:
        """How long from `now` until the burst going ends (0: it has)."""
        return max(0.0, min(self.last + DEBOUNCE_S, self.first + MAX_BATCH_S) - now)
