"""The container's clock, as we estimate it: the one home of "what time is it there".

Mtimes on a container are stamped by its clock, which may be off from ours; a run compares
them with the container's "now", taken as ours plus the offset the transport measured when
it connected (`Transport.probe().clock`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from forge_syncd.mtimes import NS

# How far our estimate of the container's clock may run ahead of it: the probe reads it in
# whole seconds (`date +%s`) and offsets under 2 s are taken as round-trip noise.
CLOCK_SLACK_NS = 3 * NS


@dataclass(frozen=True)
class ContainerClock:
    """The container's clock: its offset from ours (seconds), read when connecting."""

    offset_s: float = 0.0

    def now_ns(self) -> int:
        """Return the container's clock now (ns)."""
        return time.time_ns() + int(self.offset_s * NS)

    def surely_passed_ns(self) -> int:
        """Return a time (ns) the container's clock has surely passed: our estimate of it
        less its uncertainty. Used where a transfer cannot read the container's own clock
        (SFTP)."""
        return self.now_ns() - CLOCK_SLACK_NS

    def age_s(self, mtime_ns: int) -> float:
        """Given an mtime stamped by the container, return how old it is now, in seconds
        (negative for one from the future)."""
        return time.time() + self.offset_s - mtime_ns / 1e9
