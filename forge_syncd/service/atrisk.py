"""Media at risk: the wanted remote files of a container that have no durable library copy,
as its last runs saw them, kept while the container is unreachable (that is when it
matters). Status shows them as `remote_only`; the metrics count them; `events/at_risk.py` turns
them into `media_at_risk` events when a notification sink asks for them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_syncd.jobs.outcome import SyncReport
from forge_syncd.remote.clock import ContainerClock
from forge_syncd.remote.types import RemoteFile

if TYPE_CHECKING:
    pass


class RemoteOnly:
    """One container's files that exist only on it, by path, and its clock as the last sync
    read it (their age is measured on it)."""

    def __init__(self, files: dict[bytes, RemoteFile] | None = None) -> None:
        self.files: dict[bytes, RemoteFile] = dict(files or {})
        self.clock = ContainerClock()

    def note(self, report: SyncReport) -> None:
        """Take what a sync saw at risk: a full run tells of the whole container, a live run
        only of the files it looked at; a run that never got as far as a plan, nothing."""
        at_risk = report.at_risk
        if at_risk is None:
            return
        if at_risk.scope is None:
            self.files = dict(at_risk.files)
        else:
            for path in at_risk.scope:
                self.files.pop(path, None)
            self.files.update(at_risk.files)
        if report.clock is not None:
            self.clock = report.clock

    def summary(self) -> dict[str, Any]:
        """SPEC's status `remote_only`: files and bytes that exist only on the container,
        and the age in seconds of the oldest (by its mtime; None when there is none)."""
        files = list(self.files.values())
        oldest = min((f.mtime_ns for f in files), default=None)
        age = None
        if oldest is not None:
            age = max(0.0, round(self.clock.age_s(oldest), 3))
        return {"files": len(files), "bytes": sum(f.size for f in files), "oldest_s": age}
