"""What reading one media file's generation metadata may cost, and the meter that holds to it.

Media files come from untrusted containers and are read inside the daemon's process (the
catalog sink). Every parser runs in time linear in its input; on top of that each file gets a
`MetadataBudget`: size caps on what is read and parsed, and a CPU-time limit. A `Meter`
carries one file's budget through the readers and collects why something could not be read.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class MetadataBudget:
    """Limits for reading the metadata of one file."""

    max_text: int = 1 * MiB  # one text chunk, inflated text or JSON document
    max_total_text: int = 4 * MiB  # all text chunks of one file together
    max_scan: int = 64 * MiB  # bytes of a file walked looking for metadata chunks
    max_chunks: int = 100_000  # PNG chunks walked (real files: a few thousand at most)
    max_settings: int = 1000  # key: value pairs of an infotext settings line (real: < 100)
    max_json_containers: int = 100_000  # "[" and "{" in a JSON document (real graphs: < 10,000)
    cpu_seconds: float = 1.0  # CPU time of the reading thread, so a busy machine is no cause


DEFAULT_BUDGET = MetadataBudget()


class MetadataProblem(enum.StrEnum):
    """Why metadata could not be read (the start of `GenerationInfo.metadata_error`)."""

    UNREADABLE = "unreadable"  # the file could not be opened or read
    MALFORMED = "malformed"  # a chunk or document is broken or not what its name says
    TOO_LARGE = "too_large"  # over a size cap: skipped without parsing
    OVER_TIME = "over_time"  # the CPU budget ran out: parsing stopped
    INTERNAL = "internal"  # an unexpected exception (a bug): parsing stopped


class BudgetExceeded(Exception):
    """The CPU budget of one file ran out; the message names the stage that was running."""


class Meter:
    """One file's budget while it is read: CPU deadline, text bytes left, problems found."""

    TICKS_PER_CHECK = 256  # reading the thread's CPU clock costs a system call
    MAX_PROBLEMS = 4
    MAX_DETAIL = 200

    def __init__(self, budget: MetadataBudget) -> None:
        """Given the budget, start its CPU clock now."""
        self.budget = budget
        self.text_left = budget.max_total_text
        self.problems: list[str] = []
        self._deadline = time.thread_time() + budget.cpu_seconds
        self._ticks = 0

    def tick(self, stage: str) -> None:
        """Count one step of `stage`; every TICKS_PER_CHECK steps, check the CPU deadline.

        Raise BudgetExceeded if the file's CPU time is spent.
        """
        self._ticks += 1
        if self._ticks % self.TICKS_PER_CHECK == 0:
            self.check(stage)

    def check(self, stage: str) -> None:
        """Raise BudgetExceeded (naming `stage`) if the file's CPU time is spent."""
        if time.thread_time() > self._deadline:
            raise BudgetExceeded(stage)

    def note(self, kind: MetadataProblem, detail: str) -> None:
        """Record a problem as "<kind>: <detail>" (the first few, each detail cut short)."""
        if len(self.problems) < self.MAX_PROBLEMS:
            self.problems.append(f"{kind}: {detail[: self.MAX_DETAIL]}")

    @property
    def error(self) -> str | None:
        """Return the problems found, joined with "; ", or None if there were none."""
        return "; ".join(self.problems) or None
