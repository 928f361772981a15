"""When a burst of watcher records ends, so that its complete files are synced by one run.

A burst ends DEBOUNCE_S after its latest record, or MAX_BATCH_S after its first (a burst
that never pauses is synced every second). A burst whose files' bytes came with their
records (pushed: nothing is left to fetch) ends QUICK_S after its latest record instead:
waiting for more would only delay them. Pure: the caller passes the monotonic clock.
"""

from __future__ import annotations

DEBOUNCE_S = 0.1
QUICK_S = 0.003
MAX_BATCH_S = 1.0


class Burst:
    """The records of one burst: when its first and latest came (0.0: no burst going)."""

    def __init__(self) -> None:
        self.first = 0.0
        self.last = 0.0
        self.quiet = DEBOUNCE_S  # how long after its latest record the burst ends

    def __bool__(self) -> bool:
        return bool(self.first)

    def noted(self, now: float, pushed: bool = False) -> None:
        """A change came at `now`: it starts a burst, or extends the one going. `pushed`:
        its file's bytes came with it (a burst of only such changes ends sooner)."""
        if not self.first:
            self.quiet = QUICK_S if pushed else DEBOUNCE_S
        elif not pushed:
            self.quiet = DEBOUNCE_S
        self.first = self.first or now
        self.last = now

    def reset(self) -> None:
        """The burst was taken (or cancelled itself): none is going."""
        self.first = self.last = 0.0
        self.quiet = DEBOUNCE_S

    def over(self, now: float) -> bool:
        """Whether the burst going has ended at `now`."""
        return bool(self.first) and (
            now - self.last >= self.quiet or now - self.first >= MAX_BATCH_S
        )

    def ends_in(self, now: float) -> float:
        """How long from `now` until the burst going ends (0: it has)."""
        return max(0.0, min(self.last + self.quiet, self.first + MAX_BATCH_S) - now)
