"""What a run reports besides its counters: the typed parts of `job.RunOutcome`.

A sync fills a `SyncReport` (how it listed and fetched, the container's clock, what it left
at risk, what it planned and left settling, what it did not copy and why); a cleanup fills a
`CleanupReport` (its decisions). The runner reads them after the run (status figures, live
mode's settling files, the at-risk media); `job.outcome_dict` turns them into a `runs` entry
of the control protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forge_syncd.control.messages import DecisionRow, ReasonCount
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.types import ListingMethod, RemoteFile, TransferMethod


@dataclass
class AtRisk:
    """Wanted remote files with no durable library copy, as one run left them (what it
    landed is left out). `scope`: the paths the run looked at (a live run's); None: the
    whole container (a full run), so these are all the container's files at risk."""

    files: dict[bytes, RemoteFile]
    scope: frozenset[bytes] | None = None


@dataclass
class SyncReport:
    """What one sync run reports. Set once the run has its listing (or, in live mode, the
    watcher's files); a run that fails before that has none."""

    listing: ListingMethod  # how the files were listed (watch: a live run's, no listing)
    listing_reused: bool = False  # the listing's bytes matched the remembered plan's
    transfer: TransferMethod | None = None  # how the bytes came (None: nothing fetched)
    clock: ContainerClock | None = None  # the container's clock, as planned with
    at_risk: AtRisk | None = None  # None: the run never got as far as a plan
    # A full run's (files, bytes) to fetch or still settling (None: a live run, or no plan).
    planned: tuple[int, int] | None = None
    settling: list[RemoteFile] = field(default_factory=list)  # live mode syncs them later
    # What the run left on the container, by reason: [files, bytes] (`sync.run.not_copied`).
    not_copied: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class CleanupReport:
    """What one cleanup run reports: its decisions (those kept as too young left out), what
    it keeps by reason, and the `older_than` it decided with."""

    dry_run: bool
    decisions: list[DecisionRow]
    kept: list[ReasonCount]
    older_than_s: float
