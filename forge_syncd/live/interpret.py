"""What each watcher record means to live mode: records turned into `Changes`.

A file written or seen is a change only when this container syncs it: inside its `folders`
(else a bad record: no watcher was asked to look there) and wanted by `include`/`exclude`
(else dropped quietly: a listing skips it too). A header (`STARTED`) counts only for the
first watcher of a channel or a fallback to a later one in FALLBACK_ORDER; any other is a
bad record, not another full run. Records of no use are counted in a `ProblemTally`.
"""

from __future__ import annotations

from collections.abc import Callable

from forge_syncd.live.budget import ProblemTally
from forge_syncd.live.changes import Changes
from forge_syncd.paths import display
from forge_syncd.patterns import Scope
from forge_syncd.remote.types import WatchEvent, WatchRecord

# The watchers in the order the remote script falls back from one to the next.
FALLBACK_ORDER = ("inotifywait", "python3", "find")
_FILE_EVENTS = (WatchEvent.WRITTEN, WatchEvent.SEEN, WatchEvent.DELETED)


class RecordInterpreter:
    """Takes one watcher channel's records into `Changes`."""

    def __init__(
        self, scope: Scope, problems: ProblemTally, on_started: Callable[[str], None]
    ) -> None:
        """`on_started(backend)`: a watcher was established (its header counted)."""
        self.scope = scope
        self.problems = problems
        self.on_started = on_started
        self.established = ""  # the watcher the channel said it runs

    def note(self, records: list[WatchRecord], changes: Changes) -> bool:
        """Take the records into `changes`, counting those of no use; return whether any
        was a change."""
        changed = False
        for record in records:
            event = record.event
            if event is WatchEvent.STARTED:
                self._started(record.message)
            elif event is WatchEvent.FAILED:
                self.problems.add("watcher failure", record.message)
            elif event is WatchEvent.OVERFLOW:
                changes.overflow()
                changed = True
            elif event in _FILE_EVENTS and not self._ours(record):
                continue
            elif event is WatchEvent.WRITTEN and record.file is not None:
                changes.written(record.file)
                changed = True
            elif event is WatchEvent.SEEN and record.file is not None:
                changes.looked(record.file)
                changed = True
            elif event is WatchEvent.DELETED:
                changes.deleted(record.path)
            elif event is WatchEvent.REFUSED:
                self.problems.add(f"file skipped ({record.message})", display(record.path))
        return changed

    def _started(self, backend: str) -> None:
        """A header: the first of a channel, or a fallback to a later watcher, is a watcher
        established; any other is a bad record."""
        before = self.established
        later = (
            before in FALLBACK_ORDER
            and backend in FALLBACK_ORDER
            and FALLBACK_ORDER.index(backend) > FALLBACK_ORDER.index(before)
        )
        if before and not later:
            self.problems.add("repeated watcher header", backend)
            return
        self.established = backend
        self.on_started(backend)

    def _ours(self, record: WatchRecord) -> bool:
        """Whether a file record names a file this container syncs (see the module)."""
        path = record.file.path if record.file is not None else record.path
        if not self.scope.covers(path):
            self.problems.add("outside the synced folders", display(path))
            return False
        return record.event is WatchEvent.DELETED or self.scope.wants(path)
